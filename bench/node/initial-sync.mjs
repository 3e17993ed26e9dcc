// Workload 1 for the alternatives, native to native: a fresh device receives a document
// of CHANGES changes (change i sets key k{i % 100} to i, as Nexus's fixture does) from a
// peer over WebSocket on loopback, both in this Node process.
// Bytes are read from the loopback interface's counters (/proc/net/dev), as Nexus's
// figure is (`cargo bench -p nexus --bench loopback`), so framing and handshakes count.
//
//   node bench/node/initial-sync.mjs [CHANGES]     prints one JSON object
import { readFileSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { WebSocketServer, WebSocket } from "ws";
import { Repo } from "@automerge/automerge-repo";
import { WebSocketClientAdapter, WebSocketServerAdapter } from "@automerge/automerge-repo-network-websocket";
import * as Y from "yjs";
import { WebsocketProvider } from "y-websocket";
import { setupWSConnection, getYDoc } from "@y/websocket-server/utils";

const CHANGES = Number(process.argv[2] ?? 10_000);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function loopbackBytes() {
  const line = readFileSync("/proc/net/dev", "utf8").split("\n").find((l) => l.trim().startsWith("lo:"));
  return Number(line.split(":")[1].trim().split(/\s+/)[0]);
}

async function until(what, check, timeoutMs = 120_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(2);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** NodeFS storage when the package is installed: durable, as Nexus's SQLite is. */
async function storage(dir) {
  try {
    const { NodeFSStorageAdapter } = await import("@automerge/automerge-repo-storage-nodefs");
    return { adapter: new NodeFSStorageAdapter(dir), durable: true };
  } catch {
    return { adapter: undefined, durable: false };
  }
}

async function automergeRepo() {
  const dir = mkdtempSync(join(tmpdir(), "bench-am-"));
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise((resolve) => wss.on("listening", resolve));
  const serverStorage = await storage(join(dir, "server"));
  const server = new Repo({ network: [new WebSocketServerAdapter(wss)], storage: serverStorage.adapter, peerId: "server", sharePolicy: async () => true });
  const source = server.create({});
  for (let i = 0; i < CHANGES; i++) source.change((d) => { d[`k${i % 100}`] = i; });
  await server.flush?.();
  const heads = source.heads();

  const clientStorage = await storage(join(dir, "client"));
  const before = loopbackBytes();
  const started = performance.now();
  const client = new Repo({
    network: [new WebSocketClientAdapter(`ws://127.0.0.1:${wss.address().port}`)],
    storage: clientStorage.adapter,
    peerId: "client",
    sharePolicy: async () => true,
  });
  const copy = await client.find(source.url);
  await until("automerge-repo's copy", () => JSON.stringify(copy.heads()) === JSON.stringify(heads));
  if (clientStorage.durable) await client.flush();
  const ms = performance.now() - started;
  await sleep(50);
  const bytes = loopbackBytes() - before;
  await client.shutdown();
  await server.shutdown();
  wss.close();
  rmSync(dir, { recursive: true, force: true });
  return {
    ms,
    bytes,
    note: clientStorage.durable
      ? "NodeFS storage on both sides; the time includes the client's flush to disk; unsigned changes"
      : "in memory (automerge-repo-storage-nodefs not installed); unsigned changes",
  };
}

async function yjs() {
  const http = createServer();
  const wss = new WebSocketServer({ noServer: true });
  wss.on("connection", setupWSConnection);
  http.on("upgrade", (request, socket, head) => wss.handleUpgrade(request, socket, head, (ws) => wss.emit("connection", ws, request)));
  await new Promise((resolve) => http.listen(0, "127.0.0.1", resolve));
  const source = getYDoc("bench");
  const map = source.getMap("doc");
  for (let i = 0; i < CHANGES; i++) source.transact(() => map.set(`k${i % 100}`, i));

  const before = loopbackBytes();
  const started = performance.now();
  const doc = new Y.Doc();
  const provider = new WebsocketProvider(`ws://127.0.0.1:${http.address().port}`, "bench", doc, { WebSocketPolyfill: WebSocket, disableBc: true });
  const last = `k${(CHANGES - 1) % 100}`;
  await until("the Yjs copy", () => doc.getMap("doc").get(last) === CHANGES - 1);
  const ms = performance.now() - started;
  await sleep(50);
  const bytes = loopbackBytes() - before;
  provider.destroy();
  wss.close();
  http.close();
  return { ms, bytes, note: "y-websocket server and client in memory (no persistence on either side), unsigned, unencrypted; Yjs keeps only the latest write per key (100 entries), where Automerge keeps every change" };
}

const result = { changes: CHANGES, automergeRepo: await automergeRepo(), yjs: await yjs() };
console.log(JSON.stringify(result));
process.exit(0);

// Workload 7 for the alternatives: the resident memory of the server a browser app
// would run beside them (a y-websocket server; an automerge-repo sync server), idle
// and with PEERS clients connected, each syncing one small document of its own. The
// server runs as its own process (this file with `--serve yjs|automerge-repo`); the
// clients run here.
//
//   node bench/node/server-memory.mjs [PEERS]     prints one JSON object
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { WebSocketServer, WebSocket } from "ws";

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function serve(kind) {
  if (kind === "yjs") {
    const { setupWSConnection } = await import("@y/websocket-server/utils");
    const http = createServer();
    const wss = new WebSocketServer({ noServer: true });
    wss.on("connection", setupWSConnection);
    http.on("upgrade", (req, socket, head) => wss.handleUpgrade(req, socket, head, (ws) => wss.emit("connection", ws, req)));
    http.listen(0, "127.0.0.1", () => console.log(`PORT ${http.address().port}`));
  } else {
    const { Repo } = await import("@automerge/automerge-repo");
    const { WebSocketServerAdapter } = await import("@automerge/automerge-repo-network-websocket");
    const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
    wss.on("listening", () => console.log(`PORT ${wss.address().port}`));
    new Repo({ network: [new WebSocketServerAdapter(wss)], peerId: "sync-server", sharePolicy: async () => true });
  }
}

function rssKiB(pid) {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("VmRSS:"));
  return Number(line.split(/\s+/)[1]);
}

async function until(what, check, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(10);
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function measure(kind, peers) {
  const child = spawn(process.execPath, [new URL(import.meta.url).pathname, "--serve", kind], { stdio: ["ignore", "pipe", "inherit"] });
  const port = await new Promise((resolve, reject) => {
    child.stdout.on("data", (d) => {
      const m = /PORT (\d+)/.exec(String(d));
      if (m) resolve(Number(m[1]));
    });
    child.on("exit", (code) => reject(new Error(`${kind} server exited with ${code}`)));
  });
  await sleep(1000);
  const idle = rssKiB(child.pid);
  const clients = [];
  if (kind === "yjs") {
    const Y = await import("yjs");
    const { WebsocketProvider } = await import("y-websocket");
    for (let i = 0; i < peers; i++) {
      const doc = new Y.Doc();
      doc.getMap("note").set("title", `note of peer ${i}`);
      const provider = new WebsocketProvider(`ws://127.0.0.1:${port}`, `doc-${i}`, doc, { WebSocketPolyfill: WebSocket, disableBc: true });
      clients.push(provider);
    }
    await until("every Yjs client synced", () => clients.every((p) => p.synced));
  } else {
    const { Repo } = await import("@automerge/automerge-repo");
    const { WebSocketClientAdapter } = await import("@automerge/automerge-repo-network-websocket");
    for (let i = 0; i < peers; i++) {
      const repo = new Repo({ network: [new WebSocketClientAdapter(`ws://127.0.0.1:${port}`)], peerId: `client-${i}`, sharePolicy: async () => true });
      const handle = repo.create({ title: `note of peer ${i}` });
      clients.push({ repo, handle });
    }
    // Synced when the server's heads for each document equal the client's.
    await until("every automerge-repo client synced", () =>
      clients.every(({ repo, handle }) => {
        const peersHeads = handle.getSyncInfo?.("sync-server")?.lastHeads;
        return peersHeads ? JSON.stringify(peersHeads) === JSON.stringify(handle.heads()) : false;
      }),
    ).catch(async () => sleep(3000)); // older versions have no getSyncInfo: give it time
  }
  await sleep(2000);
  const withPeers = rssKiB(child.pid);
  child.kill();
  for (const c of clients) {
    if (c.destroy) c.destroy();
    else await c.repo.shutdown();
  }
  return { peers, idleKiB: idle, withPeersKiB: withPeers };
}

// automerge-repo reports documents it waited on too long as unhandled rejections; count
// them instead of dying, and say so in the result.
let rejections = 0;
process.on("unhandledRejection", () => {
  rejections += 1;
});

if (process.argv[2] === "--serve") {
  await serve(process.argv[3]);
} else {
  const peers = Number(process.argv[2] ?? 100);
  const result = {
    yjs: { ...(await measure("yjs", peers)), note: "y-websocket server (@y/websocket-server): holds every document in memory and reads it" },
    automergeRepo: { ...(await measure("automerge-repo", peers)), note: "automerge-repo sync server (Repo + WebSocketServerAdapter, in memory): holds and reads every document" },
  };
  if (rejections) result.automergeRepo.note += `; ${rejections} timeouts inside automerge-repo while ${peers} clients in one process synced`;
  console.log(JSON.stringify(result));
  process.exit(0);
}

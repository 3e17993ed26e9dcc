// Workloads 2 and 3 for the alternatives, in one Node process: two devices that share
// DOCS documents reconnect (a) in sync and (b) after one document changed on one side.
// Counted as Nexus's figure is (crates/nexus-core/examples/reconnect.rs): the protocol's
// messages as they would go on the wire (automerge-repo: its CBOR envelope, as its
// WebSocket adapter sends it; Yjs: y-websocket's sync messages), delivered in
// synchronous rounds, a round trip being two rounds; time is wall-clock from reconnect
// to the last message, in memory, with no network latency.
//
//   node bench/node/reconnect.mjs [DOCS [AUTOMERGE_DOCS]]     prints one JSON object
//
// AUTOMERGE_DOCS (default DOCS) sizes automerge-repo's run on its own: setting up 10,000
// handles in one automerge-repo 2.5 Repo takes minutes (it grows faster than linearly),
// while its reconnect cost is linear in the documents (each is announced and synced on
// its own), so the suite measures it at 2,000 and says so.
import { Repo, NetworkAdapter, cbor } from "@automerge/automerge-repo";
import * as Y from "yjs";
import * as syncProtocol from "y-protocols/sync";
import * as encoding from "lib0/encoding";
import * as decoding from "lib0/decoding";

const DOCS = Number(process.argv[2] ?? 10_000);
const AUTOMERGE_DOCS = Number(process.argv[3] ?? DOCS);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** One end of an in-memory link whose messages wait in a shared queue until delivered. */
class QueuedAdapter extends NetworkAdapter {
  constructor(link, side) {
    super();
    this.link = link;
    this.side = side;
  }
  isReady() {
    return true;
  }
  whenReady() {
    return Promise.resolve();
  }
  connect(peerId, peerMetadata) {
    this.peerId = peerId;
    this.peerMetadata = peerMetadata;
    this.link.joined(this);
  }
  send(message) {
    if (!this.link.up) return;
    this.link.queue.push({ to: 1 - this.side, message });
  }
  disconnect() {}
}

class Link {
  ends = [];
  queue = [];
  up = false;
  traffic = { bytes: 0, messages: 0 };
  joined(end) {
    this.ends[end.side] = end;
  }
  open() {
    this.up = true;
    const [a, b] = this.ends;
    a.emit("peer-candidate", { peerId: b.peerId, peerMetadata: b.peerMetadata });
    b.emit("peer-candidate", { peerId: a.peerId, peerMetadata: a.peerMetadata });
  }
  close() {
    this.up = false;
    this.queue = [];
    const [a, b] = this.ends;
    a.emit("peer-disconnected", { peerId: b.peerId });
    b.emit("peer-disconnected", { peerId: a.peerId });
  }
  /** Delivers in rounds until nothing was sent for `quietMs`; returns the rounds. */
  async drive(quietMs = 400) {
    let rounds = 0;
    let quietSince = Date.now();
    let last = Date.now();
    while (Date.now() - quietSince < quietMs) {
      await sleep(5);
      if (this.queue.length === 0) continue;
      const batch = this.queue;
      this.queue = [];
      rounds += 1;
      for (const { to, message } of batch) {
        this.traffic.bytes += cbor.encode(message).byteLength;
        this.traffic.messages += 1;
        this.ends[to].emit("message", message);
      }
      quietSince = last = Date.now();
    }
    return { rounds, last };
  }
}

async function measure(link, started) {
  const before = { ...link.traffic };
  const { rounds, last } = await link.drive();
  return {
    bytes: link.traffic.bytes - before.bytes,
    messages: link.traffic.messages - before.messages,
    roundTrips: Math.ceil(rounds / 2),
    ms: Math.max(0, last - started),
  };
}

async function automergeRepo() {
  const link = new Link();
  const a = new Repo({ network: [new QueuedAdapter(link, 0)], peerId: "a", sharePolicy: async () => true });
  const b = new Repo({ network: [new QueuedAdapter(link, 1)], peerId: "b", sharePolicy: async () => true });
  const handles = [];
  for (let i = 0; i < AUTOMERGE_DOCS; i++) handles.push(a.create({ title: `note ${i}`, done: false }));
  // B starts with copies (its first sync through the network grows quadratically with
  // the number of documents in automerge-repo 2.5: 45 s for 2,000).
  for (const h of handles) b.import(await a.export(h.documentId), { docId: h.documentId });
  for (let i = 0; i < 200 && !(link.ends[0]?.peerId && link.ends[1]?.peerId); i++) await sleep(10);

  let started = Date.now();
  link.open();
  const inSync = await measure(link, started);
  link.close();

  const changed = handles[Math.floor(AUTOMERGE_DOCS / 2)];
  changed.change((d) => {
    d.done = true;
  });
  started = Date.now();
  link.open();
  const oneChanged = await measure(link, started);
  const copy = await b.find(changed.url);
  if (copy.doc().done !== true) throw new Error("automerge-repo: B did not get the changed document");
  await a.shutdown?.();
  await b.shutdown?.();
  return {
    reconnectInSync: inSync,
    reconnectOneChanged: oneChanged,
    docs: AUTOMERGE_DOCS,
    note: `${AUTOMERGE_DOCS === DOCS ? "" : `measured with ${AUTOMERGE_DOCS.toLocaleString("en")} documents (not ${DOCS.toLocaleString("en")}: see bench/node/reconnect.mjs); `}documents loaded in both repos; each is announced and synced on its own at reconnect; time includes automerge-repo's own sync throttling`,
  };
}

/** y-websocket's connect handshake for one document, as messages: returns [bytes, messages]. */
function yjsHandshake(client, server) {
  let bytes = 0;
  let messages = 0;
  const send = (encoder) => {
    const message = encoding.toUint8Array(encoder);
    bytes += message.byteLength;
    messages += 1;
    return message;
  };
  // Both sides open with step 1 (their state vector)...
  const step1 = (doc) => {
    const e = encoding.createEncoder();
    encoding.writeVarUint(e, 0); // messageSync
    syncProtocol.writeSyncStep1(e, doc);
    return send(e);
  };
  const fromClient = step1(client);
  const fromServer = step1(server);
  // ...and each answers the other's with step 2 (what the other lacks).
  const answer = (message, doc) => {
    const d = decoding.createDecoder(message);
    decoding.readVarUint(d);
    const e = encoding.createEncoder();
    encoding.writeVarUint(e, 0);
    syncProtocol.readSyncMessage(d, e, doc, null);
    if (encoding.length(e) > 1) {
      const reply = send(e);
      const r = decoding.createDecoder(reply);
      decoding.readVarUint(r);
      syncProtocol.readSyncMessage(r, encoding.createEncoder(), doc === server ? client : server, null);
    }
  };
  answer(fromClient, server);
  answer(fromServer, client);
  return [bytes, messages];
}

function yjs() {
  const pairs = [];
  for (let i = 0; i < DOCS; i++) {
    const a = new Y.Doc();
    const map = a.getMap("note");
    map.set("title", `note ${i}`);
    map.set("done", false);
    const b = new Y.Doc();
    Y.applyUpdate(b, Y.encodeStateAsUpdate(a));
    pairs.push([a, b]);
  }
  const reconnect = () => {
    const started = performance.now();
    let bytes = 0;
    let messages = 0;
    for (const [a, b] of pairs) {
      const [n, m] = yjsHandshake(b, a);
      bytes += n;
      messages += m;
    }
    return { bytes, messages, roundTrips: 1, ms: performance.now() - started };
  };
  const inSync = reconnect();
  const [a, b] = pairs[Math.floor(DOCS / 2)];
  a.getMap("note").set("done", true);
  const oneChanged = reconnect();
  if (b.getMap("note").get("done") !== true) throw new Error("yjs: B did not get the changed document");
  return {
    reconnectInSync: inSync,
    reconnectOneChanged: oneChanged,
    note: `one y-websocket connection (and HTTP upgrade) per document: ${DOCS} WebSocket handshakes are not counted`,
  };
}

const result = { docs: DOCS, automergeRepo: await automergeRepo(), yjs: yjs() };
console.log(JSON.stringify(result));
process.exit(0);

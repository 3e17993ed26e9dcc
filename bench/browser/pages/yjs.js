// Yjs behind the benchmark interface: y-indexeddb for storage, y-websocket for the
// network (its WebSocket to a server, and its BroadcastChannel between tabs).
import * as Y from "yjs";
import { IndexeddbPersistence } from "y-indexeddb";
import { WebsocketProvider } from "y-websocket";
import { clock, inBatches, moderateDoc, publish, seenRecorder, smallDoc, tasksBetween, until } from "./common.js";

let state = null;
const seen = seenRecorder();

/**
 * Resolves once every update y-indexeddb has queued so far is committed. y-indexeddb
 * writes each update in its own readwrite transaction on the "updates" store from the
 * doc's "update" event (`_storeUpdate`, synchronous with `doc.transact`) and exposes no
 * promise for it. IndexedDB starts a transaction only after every earlier transaction
 * with an overlapping scope has finished, so the `complete` of a later read-only
 * transaction on the same store means the earlier writes were committed. Returns the
 * store's record count, which the caller can check.
 */
function persisted(persistence) {
  return new Promise((resolve, reject) => {
    const tx = persistence.db.transaction(["updates"], "readonly");
    const req = tx.objectStore("updates").count();
    tx.oncomplete = () => resolve(req.result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

async function openDoc(name) {
  const doc = new Y.Doc();
  const persistence = new IndexeddbPersistence(name, doc);
  await persistence.whenSynced;
  return { doc, persistence };
}

function fill(map, values) {
  for (const [k, v] of Object.entries(values)) map.set(k, v);
}

publish("yjs", {
  async init() {
    return { wasmInitMs: 0 };
  },

  // 4. Local write until durable: doc.transact, then the IndexedDB transaction y-indexeddb
  // started for the update has completed (see `persisted`).
  async durableWrites({ db, keys, warmup, edits }) {
    const { doc, persistence } = await openDoc(db);
    const map = doc.getMap("root");
    doc.transact(() => fill(map, moderateDoc(keys)));
    await persisted(persistence);
    const samples = [];
    let before = await persisted(persistence);
    for (let i = 0; i < warmup + edits; i++) {
      const t0 = performance.now();
      doc.transact(() => map.set("counter", i));
      const count = await persisted(persistence);
      if (i >= warmup) samples.push(performance.now() - t0);
      // Every edit must have added a record (y-indexeddb compacts only after 500).
      if (count !== before + 1) throw new Error(`y-indexeddb record count ${before} -> ${count}`);
      before = count;
    }
    const check = map.get("counter");
    await persistence.destroy();
    doc.destroy();
    return { samples, check };
  },

  // 5. Tab to tab: y-indexeddb in both tabs and y-websocket's BroadcastChannel between
  // them (WebsocketProvider with connect: false and connectBc(): no server involved).
  async tabOpen({ db, keys, ids }) {
    const { doc, persistence } = await openDoc(db);
    const map = doc.getMap("root");
    if (!ids) {
      doc.transact(() => fill(map, moderateDoc(keys)));
      await persisted(persistence);
      ids = { room: db };
    }
    const provider = new WebsocketProvider("ws://127.0.0.1:9", ids.room, doc, { connect: false });
    provider.connectBc();
    map.observe(() => seen.saw(map.get("counter")));
    state = { doc, persistence, provider, map };
    return ids;
  },
  async tabEdit(i) {
    const t = clock();
    state.doc.transact(() => state.map.set("counter", i));
    return t;
  },
  tabWaitSeen: (i) => seen.waitSeen(i),
  async tabClose() {
    if (!state) return;
    state.provider.destroy();
    await state.persistence.destroy();
    state = null;
  },

  // 6. Cold open: y-indexeddb keeps one IndexedDB database per document; a root document
  // lists their names.
  async vaultPrep({ db, docs, batch = 50 }) {
    const names = [];
    for (let i = 0; i < docs; i += batch) {
      const jobs = [];
      for (let j = i; j < Math.min(docs, i + batch); j++) {
        const name = `${db}-${j}`;
        names.push(name);
        jobs.push(
          (async () => {
            const { doc, persistence } = await openDoc(name);
            doc.transact(() => fill(doc.getMap("root"), smallDoc(j)));
            await persisted(persistence);
            await persistence.destroy();
            doc.destroy();
          })(),
        );
      }
      await Promise.all(jobs);
    }
    const root = await openDoc(`${db}-root`);
    root.doc.getArray("docs").push(names);
    await persisted(root.persistence);
    await root.persistence.destroy();
    return { count: names.length };
  },
  async vaultOpen({ db, batch = Infinity }) {
    const t0 = performance.now();
    const root = await openDoc(`${db}-root`);
    const names = root.doc.getArray("docs").toArray();
    const tList = performance.now();
    const opened = await inBatches(names, batch, (name) => openDoc(name));
    let sum = 0;
    for (const { doc } of opened) sum += doc.getMap("root").get("n");
    const t1 = performance.now();
    window.keep = { root, opened };
    return {
      ms: t1 - t0,
      phases: { rootMs: tList - t0, openAndReadMs: t1 - tList },
      count: opened.length,
      sum,
      ...tasksBetween(t0, t1),
    };
  },

  // 1b. Initial sync from a y-websocket server to a fresh Y.Doc with y-indexeddb.
  async initialSync({ db, url, room, expect, timeoutMs = 120_000 }) {
    const { doc, persistence } = await openDoc(db);
    const map = doc.getMap("root");
    const t0 = performance.now();
    const provider = new WebsocketProvider(url, room, doc, { disableBc: true });
    await until(() => map.get(expect.key) === expect.value, timeoutMs, "the whole document");
    const t1 = performance.now();
    const durable = await persisted(persistence);
    window.keep = { doc, provider, persistence };
    return {
      ms: t1 - t0,
      keys: map.size,
      idbRecords: durable,
      ...tasksBetween(t0, t1),
    };
  },
});

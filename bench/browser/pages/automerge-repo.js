// @automerge/automerge-repo behind the benchmark interface: IndexedDB storage, the
// BroadcastChannel adapter between tabs, the WebSocket client adapter to a sync server.
// The slim entry with the .wasm served as a file (automerge's documented way without a
// bundler plugin), so that loading the module is a step of its own, as for Nexus.
import { Repo, initializeWasm } from "@automerge/automerge-repo/slim";
import wasmUrl from "@automerge/automerge/automerge.wasm?url";
import { IndexedDBStorageAdapter } from "@automerge/automerge-repo-storage-indexeddb";
import { BroadcastChannelNetworkAdapter } from "@automerge/automerge-repo-network-broadcastchannel";
import { BrowserWebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket";
import { clock, inBatches, moderateDoc, publish, seenRecorder, smallDoc, tasksBetween, until } from "./common.js";

let repo = null;
let handle = null;
const seen = seenRecorder();

publish("automerge-repo", {
  async init() {
    const t0 = performance.now();
    await initializeWasm(wasmUrl);
    return { wasmInitMs: performance.now() - t0 };
  },

  // 4. Local write until durable. automerge-repo saves on its own 100 ms after a change
  // (saveDebounceRate, throttled); `repo.flush([id])` calls StorageSubsystem.saveDoc
  // right away, which awaits IndexedDBStorageAdapter.save, which resolves on the
  // transaction's `complete` event.
  async durableWrites({ db, keys, warmup, edits }) {
    const r = new Repo({ storage: new IndexedDBStorageAdapter(db), network: [] });
    const h = r.create(moderateDoc(keys));
    await r.flush([h.documentId]);
    const samples = [];
    for (let i = 0; i < warmup + edits; i++) {
      const t0 = performance.now();
      h.change((d) => {
        d.counter = i;
      });
      await r.flush([h.documentId]);
      if (i >= warmup) samples.push(performance.now() - t0);
    }
    const check = h.doc().counter;
    await r.shutdown();
    return { samples, check };
  },

  // 5. Tab to tab: both tabs on the same IndexedDB database and a BroadcastChannel adapter.
  async tabOpen({ db, keys, ids }) {
    repo = new Repo({
      storage: new IndexedDBStorageAdapter(db),
      network: [new BroadcastChannelNetworkAdapter({ channelName: `${db}-bc` })],
    });
    if (!ids) {
      handle = repo.create(moderateDoc(keys));
      await repo.flush([handle.documentId]);
      ids = { doc: handle.url };
    } else {
      handle = await repo.find(ids.doc);
    }
    handle.on("change", ({ doc }) => seen.saw(doc.counter));
    return ids;
  },
  async tabEdit(i) {
    const t = clock();
    handle.change((d) => {
      d.counter = i;
    });
    return t;
  },
  tabWaitSeen: (i) => seen.waitSeen(i),
  async tabClose() {
    await repo?.shutdown();
    repo = null;
  },

  // 6. Cold open of 10,000 documents. automerge-repo has no list of documents: as apps
  // do, a root document holds their URLs, and its URL is kept in localStorage.
  async vaultPrep({ db, docs, batch = 500 }) {
    const r = new Repo({ storage: new IndexedDBStorageAdapter(db), network: [] });
    const urls = [];
    for (let i = 0; i < docs; i += batch) {
      const made = [];
      for (let j = i; j < Math.min(docs, i + batch); j++) made.push(r.create(smallDoc(j)));
      await r.flush(made.map((h) => h.documentId));
      urls.push(...made.map((h) => h.url));
    }
    const root = r.create({ docs: urls });
    await r.flush([root.documentId]);
    localStorage.setItem(`${db}-root`, root.url);
    await r.shutdown();
    return { count: urls.length };
  },
  async vaultOpen({ db, batch = Infinity }) {
    const t0 = performance.now();
    const r = new Repo({ storage: new IndexedDBStorageAdapter(db), network: [] });
    const root = await r.find(localStorage.getItem(`${db}-root`));
    const urls = root.doc().docs;
    const tList = performance.now();
    const handles = await inBatches(urls, batch, (u) => r.find(u));
    let sum = 0;
    for (const h of handles) sum += h.doc().n;
    const t1 = performance.now();
    window.keep = { r, handles };
    return {
      ms: t1 - t0,
      phases: { rootMs: tList - t0, findAndReadMs: t1 - tList },
      count: handles.length,
      sum,
      ...tasksBetween(t0, t1),
    };
  },

  // 1b. Initial sync from a Node sync server (NodeWSServerAdapter) to a fresh Repo with
  // IndexedDB storage; done when the page's handle holds the last change.
  async initialSync({ db, url, docUrl, expect, timeoutMs = 120_000 }) {
    const t0 = performance.now();
    const r = new Repo({
      storage: new IndexedDBStorageAdapter(db),
      network: [new BrowserWebSocketClientAdapter(url)],
    });
    const h = await r.find(docUrl);
    const tFound = performance.now();
    await until(() => h.doc()?.[expect.key] === expect.value, timeoutMs, "the whole document");
    const t1 = performance.now();
    window.keep = { r, h };
    return {
      ms: t1 - t0,
      findMs: tFound - t0,
      keys: Object.keys(h.doc()).length,
      ...tasksBetween(t0, t1),
    };
  },
});

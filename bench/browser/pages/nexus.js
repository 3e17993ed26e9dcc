// nexus-sync behind the benchmark interface. The slim entry is used so that loading the
// WebAssembly module is a step of its own (`init`), measured apart from the workloads,
// as for automerge-repo; the shipped-size workload builds the default entry too.
import { initializeWasm, Nexus } from "nexus-sync/slim";
import wasmUrl from "nexus-sync/nexus.wasm?url";
import { clock, inBatches, moderateDoc, publish, seenRecorder, smallDoc, tasksBetween, until } from "./common.js";

let nexus = null;
let handle = null;
const seen = seenRecorder();

publish("nexus", {
  async init() {
    const t0 = performance.now();
    await initializeWasm(wasmUrl);
    return { wasmInitMs: performance.now() - t0 };
  },

  // 4. Local write until durable: `await handle.change()` resolves once the IndexedDB
  // transaction holding the signed change completed.
  async durableWrites({ db, keys, warmup, edits }) {
    const n = await Nexus.open({ name: db });
    const vault = await n.createVault("bench");
    const h = await vault.create(moderateDoc(keys));
    const samples = [];
    for (let i = 0; i < warmup + edits; i++) {
      const t0 = performance.now();
      await h.change((d) => {
        d.counter = i;
      });
      if (i >= warmup) samples.push(performance.now() - t0);
    }
    const check = h.doc().counter;
    await n.close();
    return { samples, check };
  },

  // 5. Tab to tab. Tab A (opened first: the leader tab, holding the connections) creates
  // the document; tab B (a follower) finds it and listens.
  async tabOpen({ db, keys, ids }) {
    nexus = await Nexus.open({ name: db });
    if (!ids) {
      const vault = await nexus.createVault("tabs");
      handle = await vault.create(moderateDoc(keys));
      ids = { vault: vault.id, doc: handle.id };
    } else {
      const vault = await until(
        () => nexus.vault(ids.vault).catch(() => null),
        10_000,
        "the vault in tab B",
        20,
      );
      handle = await vault.find(ids.doc);
    }
    handle.on("change", ({ doc }) => seen.saw(doc.counter));
    return ids;
  },
  async tabEdit(i) {
    const t = clock();
    await handle.change((d) => {
      d.counter = i;
    });
    return t;
  },
  tabWaitSeen: (i) => seen.waitSeen(i),
  async tabClose() {
    await nexus?.close();
    nexus = null;
  },

  // 6. Cold open of a vault of many documents.
  async vaultPrep({ db, docs, batch = 50 }) {
    const n = await Nexus.open({ name: db });
    const vault = await n.createVault("vault");
    for (let i = 0; i < docs; i += batch) {
      const jobs = [];
      for (let j = i; j < Math.min(docs, i + batch); j++) jobs.push(vault.create(smallDoc(j)));
      await Promise.all(jobs);
    }
    const count = (await vault.documents()).length;
    await n.close();
    return { count };
  },
  async vaultOpen({ db, batch = Infinity }) {
    const t0 = performance.now();
    const n = await Nexus.open({ name: db });
    const tOpen = performance.now();
    const [vault] = await n.vaults();
    const ids = await vault.documents();
    const tList = performance.now();
    const handles = await inBatches(ids, batch, (id) => vault.find(id));
    let sum = 0;
    for (const h of handles) sum += h.doc().n;
    const t1 = performance.now();
    window.keep = { n, handles }; // what the heap figure is of
    return {
      ms: t1 - t0,
      phases: { openMs: tOpen - t0, listMs: tList - tOpen, findAndReadMs: t1 - tList },
      count: handles.length,
      sum,
      ...tasksBetween(t0, t1),
    };
  },

  // 1b. Initial sync from a native `nexus serve`. First `device` (this profile's device
  // id, for approval by id), then `initialSync` with the peer's WebSocket multiaddr and
  // either an invite code or the vault id the device was approved into.
  async device({ db }) {
    nexus = await Nexus.open({ name: db });
    return nexus.deviceId;
  },
  async initialSync({ address, inviteCode, vaultId, docId, expectedHeads, expect, timeoutMs = 120_000 }) {
    const t0 = performance.now();
    if (address) await nexus.connect(address);
    let vault;
    if (inviteCode) vault = await nexus.join(inviteCode);
    else vault = await until(() => nexus.vault(vaultId).catch(() => null), timeoutMs, `vault ${vaultId}`, 20);
    const tVault = performance.now();
    // (find before the document exists would cache a handle that failed to load)
    await until(async () => (await vault.documents()).includes(docId), timeoutMs, `document ${docId}`, 20);
    const h = await vault.find(docId);
    const want = expectedHeads ? [...expectedHeads].sort().join() : null;
    const done = () =>
      want ? h.heads().sort().join() === want : h.doc()?.[expect.key] === expect.value;
    await until(done, timeoutMs, "the whole document");
    const t1 = performance.now();
    return {
      ms: t1 - t0,
      vaultMs: tVault - t0,
      keys: Object.keys(h.doc()).length,
      ...tasksBetween(t0, t1),
    };
  },
});

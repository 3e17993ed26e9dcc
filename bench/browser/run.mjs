#!/usr/bin/env node
// Browser benchmarks: nexus-sync beside @automerge/automerge-repo and Yjs, in Debian's
// headless Chromium through playwright-core, everything on 127.0.0.1.
//
//   node bench/browser/run.mjs [--out bench/results/browser.json] [--only 4,5,6,1b,8] [--quick]
//
// Workloads (see bench/browser/pages/*.js for each implementation):
//   4  local write until durable in IndexedDB (p50/p99)
//   5  tab-to-tab visibility of a change (p50/p99)
//   6  cold open of a 10,000-document vault from IndexedDB (time, heap)
//   1b initial sync of a 10,000-change document over WebSocket from a loopback server
//   8  shipped size of a minimal app (raw and gzip -9)
// Sizes can be lowered for a quick try: BENCH_EDITS, BENCH_TAB_EDITS, BENCH_DOCS, BENCH_CHANGES.
import { execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createServer } from "node:http";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { build } from "vite";
import { WebSocketServer } from "ws";
import {
  browserVersion,
  call,
  CHROMIUM_ARGS,
  launch,
  memoryOf,
  nexusDevice,
  nexusInitialSync,
  openBenchPage,
  percentile,
  serveDir,
} from "./harness.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const benchDir = join(here, "..");
const repoDir = join(benchDir, "..");
const nodeModules = join(benchDir, "node_modules");
const IMPLS = ["nexus", "automerge-repo", "yjs"];
const OPEN_BATCHES = [Infinity, 50];

const { values: opts } = parseArgs({
  options: {
    out: { type: "string", default: join(benchDir, "results", "browser.json") },
    only: { type: "string", default: "8,4,5,6,1b" },
    quick: { type: "boolean", default: false },
  },
});
const quick = opts.quick;
const only = new Set(opts.only.split(",").map((s) => s.trim()));

const N = {
  docKeys: 1000, // keys of the "moderate" document of workloads 4 and 5
  warmup: Number(process.env.BENCH_WARMUP ?? 20),
  edits: Number(process.env.BENCH_EDITS ?? (quick ? 60 : 300)),
  tabWarmup: 10,
  tabEdits: Number(process.env.BENCH_TAB_EDITS ?? (quick ? 20 : 100)),
  tabGapMs: 120, // pause between tab-to-tab edits (above automerge-repo's 100 ms sync throttle)
  docs: Number(process.env.BENCH_DOCS ?? (quick ? 1_000 : 10_000)),
  changes: Number(process.env.BENCH_CHANGES ?? (quick ? 1_000 : 10_000)),
};

const nexusBin = process.env.NEXUS_BIN_DIR ?? join(repoDir, "target", "debug");
const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)} s`;
const log = (...a) => console.error(`[${elapsed()}]`, ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const round = (x, d = 2) => (typeof x === "number" ? Number(x.toFixed(d)) : x);

// ---------------------------------------------------------------------------- setup

/** npm/dist may be rebuilt by someone else: wait until the files are there and stable. */
async function nexusDist() {
  const wasm = join(repoDir, "npm", "dist", "wasm", "nexus_wasm_bg.wasm");
  const files = [join(repoDir, "npm", "dist", "index.js"), join(repoDir, "npm", "dist", "slim.js"), wasm];
  for (let i = 0; i < 120; i++) {
    if (files.every(existsSync)) {
      const a = statSync(wasm);
      await sleep(1000);
      if (files.every(existsSync) && statSync(wasm).mtimeMs === a.mtimeMs) {
        const bytes = readFileSync(wasm);
        return {
          wasmBytes: bytes.length,
          wasmSha256: createHash("sha256").update(bytes).digest("hex"),
          wasmModified: new Date(a.mtimeMs).toISOString(),
          // A release build (`scripts/build-npm`) is ~3 MB; a debug build is several times that.
          looksLikeRelease: bytes.length < 6_000_000,
        };
      }
    }
    await sleep(1000);
  }
  throw new Error("npm/dist is missing or keeps changing");
}

function versions() {
  const pkg = (name) => JSON.parse(readFileSync(join(nodeModules, name, "package.json"), "utf8")).version;
  const names = [
    "@automerge/automerge",
    "@automerge/automerge-repo",
    "@automerge/automerge-repo-storage-indexeddb",
    "@automerge/automerge-repo-network-broadcastchannel",
    "@automerge/automerge-repo-network-websocket",
    "yjs",
    "y-indexeddb",
    "y-websocket",
    "y-protocols",
    "@y/websocket-server",
    "lib0",
    "ws",
    "vite",
    "playwright-core",
    "nexus-sync",
  ];
  return { ...Object.fromEntries(names.map((n) => [n, pkg(n)])), node: process.version };
}

// ---------------------------------------------------------------------- workload 8

const SIZE_APPS = {
  "nexus (default entry, wasm inlined as base64)": "nexus-default",
  "nexus (nexus-sync/slim, wasm as a separate asset)": "nexus-slim",
  "automerge-repo (default entry, .wasm imported as an ES module)": "automerge-repo",
  "automerge-repo (slim, wasm inlined as base64)": "automerge-repo-base64",
  "automerge-repo (slim, wasm as a separate asset)": "automerge-repo-slim",
  "yjs (yjs + y-indexeddb + y-websocket)": "yjs",
};

function gzip9(file) {
  return execFileSync("gzip", ["-9", "-n", "-c", file], { maxBuffer: 1 << 30 }).length;
}

async function shippedSizes() {
  const out = {};
  for (const [label, app] of Object.entries(SIZE_APPS)) {
    const root = join(here, "size", app);
    const outDir = join(here, "dist", "size", app);
    try {
      await build({
        root,
        configFile: false,
        logLevel: "silent",
        build: { outDir, emptyOutDir: true, assetsInlineLimit: 0, target: "es2022" },
      });
    } catch (e) {
      out[label] = { unsupported: `vite build failed without a plugin: ${String(e.message).split("\n")[0]}` };
      continue;
    }
    const files = [];
    const walk = (d) => {
      for (const f of readdirSync(d)) {
        const p = join(d, f);
        if (statSync(p).isDirectory()) walk(p);
        else if (/\.(js|mjs|wasm)$/.test(f)) files.push(p);
      }
    };
    walk(outDir);
    let raw = 0;
    let gz = 0;
    const perFile = {};
    for (const f of files) {
      const r = statSync(f).size;
      const g = gzip9(f);
      raw += r;
      gz += g;
      perFile[relative(outDir, f)] = { raw: r, gzip9: g };
    }
    const wasmFiles = files.filter((f) => f.endsWith(".wasm")).length;
    out[label] = { rawBytes: raw, gzip9Bytes: gz, wasmFiles, files: perFile };
  }
  return out;
}

/** Loads each built minimal app in Chromium: does it run (its list shows "milk")? */
async function sizeAppsRun(context, sizes) {
  for (const [label, app] of Object.entries(SIZE_APPS)) {
    if (!sizes[label] || sizes[label].unsupported) continue;
    log(`8: loading ${app}`);
    const server = await serveDir(join(here, "dist", "size", app));
    const page = await context.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    try {
      await page.goto(server.url);
      await page.waitForFunction(() => document.getElementById("out")?.textContent.includes("milk"), null, { timeout: 15_000 });
      sizes[label].runsInChromium = true;
    } catch (e) {
      sizes[label].runsInChromium = false;
      sizes[label].runError = (errors[0] ?? String(e.message)).split("\n")[0];
    } finally {
      await page.close();
      await server.close();
    }
  }
}

// ----------------------------------------------------------------- workloads 4, 5, 6

function stats(samples) {
  return {
    p50Ms: round(percentile(samples, 50)),
    p99Ms: round(percentile(samples, 99)),
    meanMs: round(samples.reduce((a, b) => a + b, 0) / samples.length),
    maxMs: round(Math.max(...samples)),
    n: samples.length,
  };
}

async function durableWrites(context, url) {
  const out = {};
  for (const impl of IMPLS) {
    log(`4: ${impl}`);
    const page = await openBenchPage(context, url, impl);
    await call(page, "init");
    const r = await call(page, "durableWrites", { db: `w4-${impl}`, keys: N.docKeys, warmup: N.warmup, edits: N.edits });
    if (r.check !== N.warmup + N.edits - 1) throw new Error(`4: ${impl} ended at ${r.check}`);
    out[impl] = stats(r.samples);
    await page.close();
  }
  return out;
}

async function tabToTab(context, url) {
  const out = {};
  for (const impl of IMPLS) {
    log(`5: ${impl}`);
    const a = await openBenchPage(context, url, impl);
    await call(a, "init");
    const ids = await call(a, "tabOpen", { db: `w5-${impl}`, keys: N.docKeys });
    const b = await openBenchPage(context, url, impl);
    await call(b, "init");
    await call(b, "tabOpen", { db: `w5-${impl}`, keys: N.docKeys, ids });
    const samples = [];
    for (let i = 0; i < N.tabWarmup + N.tabEdits; i++) {
      const tA = await call(a, "tabEdit", i);
      const tB = await call(b, "tabWaitSeen", i);
      if (i >= N.tabWarmup) samples.push(tB - tA);
      await sleep(N.tabGapMs);
    }
    out[impl] = stats(samples);
    await call(b, "tabClose");
    await call(a, "tabClose");
    await b.close();
    await a.close();
  }
  return out;
}

async function coldOpen(profileDir, url) {
  const out = {};
  // Preparation (not measured): one browser session writes every implementation's vault.
  let context = await launch(profileDir);
  for (const impl of IMPLS) {
    const t = Date.now();
    const page = await openBenchPage(context, url, impl);
    await call(page, "init");
    const r = await call(page, "vaultPrep", { db: `w6-${impl}`, docs: N.docs });
    if (r.count !== N.docs) throw new Error(`6: ${impl} prepared ${r.count} documents`);
    out[impl] = { prepSeconds: round((Date.now() - t) / 1000, 1) };
    log(`6: ${impl} prepared ${N.docs} documents in ${out[impl].prepSeconds} s`);
    await page.close();
  }
  await context.close();
  // Each open in a new browser process on the same profile: nothing of the vault is in
  // memory, only the OS page cache is warm. Documents are loaded all at once
  // (Promise.all) and 50 at a time: which is faster differs between the implementations,
  // so both are measured and the faster one is the figure.
  for (const impl of IMPLS) {
    const runs = {};
    for (const batch of OPEN_BATCHES) {
      context = await launch(profileDir);
      const page = await openBenchPage(context, url, impl);
      const init = await call(page, "init");
      // NEXUS_CPU_PROFILE_OPEN=<file>: the profiler runs during Nexus's open, 50 at a time.
      const profileTo = impl === "nexus" && batch !== Infinity ? process.env.NEXUS_CPU_PROFILE_OPEN : undefined;
      const profiler = profileTo ? await startProfiler(page) : null;
      const r = await call(page, "vaultOpen", { db: `w6-${impl}`, batch });
      if (profiler) {
        writeFileSync(profileTo, JSON.stringify(await profiler.stop()));
        log(`6: CPU profile written to ${profileTo}`);
      }
      const want = (N.docs * (N.docs - 1)) / 2;
      if (r.count !== N.docs || r.sum !== want) throw new Error(`6: ${impl} read ${r.count} documents, sum ${r.sum}`);
      const memory = await memoryOf(page);
      await context.close();
      runs[batch === Infinity ? "all" : String(batch)] = {
        ms: round(r.ms, 1),
        phases: Object.fromEntries(Object.entries(r.phases).map(([k, v]) => [k, round(v, 1)])),
        wasmInitMs: round(init.wasmInitMs, 1),
        longestTaskMs: round(r.longestTaskMs, 1),
        longTaskTotalMs: round(r.longTaskTotalMs, 1),
        ...memory,
      };
    }
    const [concurrency, best] = Object.entries(runs).sort((a, b) => a[1].ms - b[1].ms)[0];
    out[impl] = {
      ...best,
      concurrency,
      msByConcurrency: Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, v.ms])),
      runs,
      prepSeconds: out[impl].prepSeconds,
    };
    log(`6: ${impl} opened in ${out[impl].ms} ms (${JSON.stringify(out[impl].msByConcurrency)})`);
  }
  return out;
}

// ---------------------------------------------------------------------- workload 1b

/** The value the last of `changes` changes wrote: change i sets k<i % 100> to i. */
const lastWrite = (changes) => ({ key: `k${(changes - 1) % 100}`, value: changes - 1 });

async function automergeServer(changes) {
  const { Repo } = await import("@automerge/automerge-repo");
  const { NodeWSServerAdapter } = await import("@automerge/automerge-repo-network-websocket");
  const http = createServer();
  const wss = new WebSocketServer({ server: http });
  await new Promise((resolve) => http.listen(0, "127.0.0.1", resolve));
  const repo = new Repo({ network: [new NodeWSServerAdapter(wss)], sharePolicy: async () => true });
  const handle = repo.create({});
  const t = Date.now();
  for (let i = 0; i < changes; i++) {
    handle.change((d) => {
      d[`k${i % 100}`] = i;
    });
  }
  log(`1b: automerge-repo server made ${changes} changes in ${Date.now() - t} ms`);
  return {
    url: `ws://127.0.0.1:${http.address().port}`,
    docUrl: handle.url,
    changes: (await import("@automerge/automerge-repo")).getAllChanges(handle.doc()).length,
    async close() {
      repo.networkSubsystem.adapters.forEach((a) => a.disconnect());
      wss.close();
      http.closeAllConnections?.();
      await new Promise((r) => http.close(r));
    },
  };
}

async function yjsServer(changes) {
  const Y = await import("yjs");
  const { setupWSConnection, getYDoc } = await import("@y/websocket-server/utils");
  const http = createServer();
  const wss = new WebSocketServer({ server: http });
  wss.on("connection", (conn, req) => setupWSConnection(conn, req));
  await new Promise((resolve) => http.listen(0, "127.0.0.1", resolve));
  const room = "bench-10k";
  const doc = getYDoc(room);
  const map = doc.getMap("root");
  for (let i = 0; i < changes; i++) doc.transact(() => map.set(`k${i % 100}`, i));
  return {
    url: `ws://127.0.0.1:${http.address().port}`,
    room,
    stateBytes: Y.encodeStateAsUpdate(doc).length,
    async close() {
      for (const c of wss.clients) c.terminate();
      wss.close();
      http.closeAllConnections?.();
      await new Promise((r) => http.close(r));
    },
  };
}

/** Runs a long-lived native process until it prints `Listening on <addr>`. */
async function nexusServe(home) {
  const child = spawn(
    join(nexusBin, "nexus"),
    ["--home", home, "serve", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0/ws"],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  let err = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (err += d));
  const deadline = Date.now() + 30_000;
  for (;;) {
    const m = out.match(/^Listening on (\S+)$/m);
    if (m) {
      return {
        address: m[1],
        stop: () => {
          child.kill("SIGTERM");
          return new Promise((r) => (child.exitCode !== null ? r() : child.once("exit", r)));
        },
      };
    }
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`nexus serve did not start: ${err.slice(-500)}`);
    }
    await sleep(100);
  }
}

/** Starts Chromium's sampling profiler on `page`; `stop()` resolves with the profile. */
async function startProfiler(page) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Profiler.enable");
  await cdp.send("Profiler.setSamplingInterval", { interval: 200 });
  await cdp.send("Profiler.start");
  return {
    async stop() {
      const { profile } = await cdp.send("Profiler.stop");
      await cdp.detach().catch(() => {});
      return profile;
    },
  };
}

async function initialSync(context, url) {
  const out = {};
  const expect = lastWrite(N.changes);
  const pick = (r) => ({
    ms: round(r.ms, 1),
    longestTaskMs: round(r.longestTaskMs, 1),
    longTasks: r.longTasks,
    longTaskTotalMs: round(r.longTaskTotalMs, 1),
  });

  // Nexus: a native `nexus serve` (target/debug) holding a document of N.changes signed
  // changes made by crates/nexus/examples/big_document, this browser's device approved by id.
  const bigDocument = join(nexusBin, "examples", "big_document");
  if (!existsSync(join(nexusBin, "nexus")) || !existsSync(bigDocument)) {
    out.nexus = { pending: `native side: no ${relative(repoDir, bigDocument)} / nexus binary` };
  } else {
    const home = mkdtempSync(join(tmpdir(), "nexus-bench-home-"));
    let server;
    try {
      const page = await openBenchPage(context, url, "nexus");
      await call(page, "init");
      const device = await nexusDevice(page, "w1b-nexus");
      const t = Date.now();
      const [vaultId, docId] = execFileSync(bigDocument, [home, String(N.changes), device], { encoding: "utf8" })
        .trim()
        .split(" ");
      log(`1b: nexus fixture (${N.changes} signed changes) made in ${Date.now() - t} ms`);
      server = await nexusServe(home);
      log(`1b: nexus`);
      // NEXUS_CPU_PROFILE=<file>: Chromium's sampling profiler runs during the sync and
      // writes a .cpuprofile (summarize with bench/browser/profile-summary.mjs; build the
      // package with scripts/build-npm --names for the engine's function names).
      const profiler = process.env.NEXUS_CPU_PROFILE ? await startProfiler(page) : null;
      const r = await nexusInitialSync(page, { address: server.address, vaultId, docId, expect });
      if (profiler) {
        writeFileSync(process.env.NEXUS_CPU_PROFILE, JSON.stringify(await profiler.stop()));
        log(`1b: CPU profile written to ${process.env.NEXUS_CPU_PROFILE}`);
      }
      if (r.keys !== 100) throw new Error(`1b: nexus holds ${r.keys} keys`);
      out.nexus = { ...pick(r), server: `nexus serve (${nexusBin.split("/").at(-1)} build), WebSocket` };
      await page.close();
    } catch (e) {
      out.nexus = { pending: `native side failed: ${String(e.message).split("\n")[0]}` };
    } finally {
      await server?.stop();
      rmSync(home, { recursive: true, force: true });
    }
  }

  {
    const server = await automergeServer(N.changes);
    try {
      log(`1b: automerge-repo`);
      const page = await openBenchPage(context, url, "automerge-repo");
      await call(page, "init");
      const r = await call(page, "initialSync", { db: "w1b-automerge", url: server.url, docUrl: server.docUrl, expect });
      if (r.keys !== 100) throw new Error(`1b: automerge-repo holds ${r.keys} keys`);
      out["automerge-repo"] = { ...pick(r), findMs: round(r.findMs, 1), serverChanges: server.changes, server: "Node Repo + NodeWSServerAdapter (in run.mjs)" };
      await page.close();
    } finally {
      await server.close();
    }
  }

  {
    const server = await yjsServer(N.changes);
    try {
      log(`1b: yjs`);
      const page = await openBenchPage(context, url, "yjs");
      await call(page, "init");
      const r = await call(page, "initialSync", { db: "w1b-yjs", url: server.url, room: server.room, expect });
      if (r.keys !== 100) throw new Error(`1b: yjs holds ${r.keys} keys`);
      out.yjs = { ...pick(r), serverStateBytes: server.stateBytes, server: "@y/websocket-server setupWSConnection (in run.mjs)" };
      await page.close();
    } finally {
      await server.close();
    }
  }
  return out;
}

// -------------------------------------------------------------------------- notes

const NOTES = {
  "4": {
    what: `${N.edits} edits after ${N.warmup} discarded, one at a time, each setting "counter" to i on a document of ${N.docKeys} short string keys; time from the call until the write is committed to IndexedDB.`,
    nexus: "`await handle.change(d => { d.counter = i })`: resolves when the IndexedDB transaction holding the change and its Ed25519 signature (made in wasm) completed and the handle took in its patch. Nexus pays for a signature per change; the others sign nothing.",
    "automerge-repo": "`handle.change(...)` then `await repo.flush([id])`: StorageSubsystem.saveDoc (Automerge saveSince, an incremental chunk; a compacted snapshot now and then) then IndexedDBStorageAdapter.save, which resolves on the transaction's `complete`. Without flush, automerge-repo writes 100 ms after a change (saveDebounceRate), so an app that does not flush is not durable for up to ~100 ms.",
    yjs: "`doc.transact(() => map.set(...))`; y-indexeddb's `_storeUpdate` starts a readwrite transaction for the update synchronously but exposes no promise, so the page waits for the `complete` of a later read-only transaction on the same store (IndexedDB starts it only after the earlier overlapping write finished) and checks the record count grew by one. No signature, no CRDT history beyond Yjs's own encoding.",
    durability: "All three use IndexedDB's default transaction durability (Chromium: 'relaxed'), so 'durable' means committed by the browser's IndexedDB backend, not fsynced.",
  },
  "5": {
    what: `Two tabs of one browser context; ${N.tabEdits} edits in tab A after ${N.tabWarmup} discarded, ${N.tabGapMs} ms apart; time from just before the edit in A to B's change listener seeing the value, both sides on performance.timeOrigin + performance.now().`,
    nexus: "Both tabs `Nexus.open` the same name (one device); A is the leader tab (opened first). A: `handle.change`, B: `handle.on('change')`. The writing tab commits to IndexedDB, then posts 'changed' on a BroadcastChannel (crates/nexus/src/web/tabs.rs). The message names the records the commit wrote (crates/nexus-core/src/storage.rs, Touched); B reads just those back from IndexedDB, applies the change to its copy of the document (Node::take_in_stored) and emits the patch.",
    "automerge-repo": "Repo per tab with IndexedDBStorageAdapter (same database) and BroadcastChannelNetworkAdapter; A: `handle.change`, B: handle 'change' event. The DocSynchronizer sends at most every 100 ms (syncDebounceRate); edits are spaced 120 ms so that throttle does not add delay here — at faster typing it can add up to 100 ms.",
    yjs: "y-indexeddb in both tabs plus y-websocket 3's BroadcastChannel path (WebsocketProvider with connect: false, then connectBc(); no server): A: doc.transact, B: map.observe. The update is posted before anything is written to IndexedDB.",
  },
  "6": {
    what: `${N.docs} small documents (3 keys) prepared in IndexedDB (not timed), then the browser is closed and relaunched on the same profile (once per implementation and concurrency) and a new page times from the first call until every document is loaded and read (sum of a field checked). Documents are loaded all at once (Promise.all) and 50 at a time; the faster is the figure (msByConcurrency has both); heap and longest task are of that run. wasm loading (wasmInitMs) is a separate step before it. Heap: after a forced GC, CDP Runtime.getHeapUsage (JS heap) plus the WebAssembly linear memory (not part of the JS heap; wasm memory never shrinks, so it is the high-water mark of the open, not what stays live).`,
    nexus: "`Nexus.open` (which reads every record of the device at open), `nexus.vaults()`, `vault.documents()`, then `vault.find` of each (Promise.all) and `handle.doc()`. Once the records are read, `Nexus.open` builds the documents in memory about 30 ms at a time (NodeLoader), giving the page a turn in between.",
    "automerge-repo": "No document listing in automerge-repo: a root document holds the 10,000 URLs (its URL in localStorage); `repo.find` of the root, then of each document (Promise.all), then `handle.doc()`.",
    yjs: "y-indexeddb keeps one IndexedDB database per document: a root Y.Doc lists the names; one Y.Doc + IndexeddbPersistence per document, `whenSynced` of each (Promise.all), then reading its map. The 10,000 connections stay open (each persistence keeps its database open). y-indexeddb also writes one record per document at every open (its state, in the open's transaction), so the open includes 10,000 small writes, and the second measured open reads one record more per document.",
  },
  "1b": {
    what: `A document of ${N.changes} separate changes (change i sets k<i % 100> to i) on a server on 127.0.0.1, a fresh browser profile; time from starting the connection to the page's document holding the last change; longest main-thread task (PerformanceObserver 'longtask') during it.`,
    nexus: `Native \`nexus serve\` (${relative(repoDir, nexusBin)}; the browser side is whatever npm/dist holds, see nexusBuild)`+" with a document of signed changes made by crates/nexus/examples/big_document and this browser's device approved by id; the browser stores the vault in IndexedDB and checks every signature before the document counts as synced. The harness (harness.mjs: nexusDevice + nexusInitialSync) also takes an invite code instead.",
    "automerge-repo": "Node Repo with NodeWSServerAdapter in the benchmark process holding the document; page: Repo with IndexedDBStorageAdapter + BrowserWebSocketClientAdapter, `repo.find(url)` then until the last value is there. Its IndexedDB write is throttled and happens after the clock stops; no signatures and no encryption (plain ws:// on loopback); Nexus's connection is Noise-encrypted and every change's signature is checked.",
    yjs: "@y/websocket-server 0.1.1 setupWSConnection (0.1.5 needs the yjs 14 prerelease; 0.1.1 is the one for yjs 13 / y-websocket 3.1) in the benchmark process; page: Y.Doc + y-indexeddb + WebsocketProvider. Yjs garbage-collects overwritten map values, so the server sends the current state (serverStateBytes), not 10,000 changes of history: not the same work as the two Automerge-based systems.",
  },
  "8": {
    what: "Each minimal app (bench/browser/size/*) built with `vite build` (production, no plugins), raw and `gzip -9 -n` bytes of all .js and .wasm files emitted, summed.",
    nexus: "Everything (storage, signatures, encryption, WebSocket/WebRTC transports, tabs) is in the one wasm module; the default entry inlines it as base64 in JS.",
    "automerge-repo": "Default entry as in its README (IndexedDB + BroadcastChannel + WebSocket adapters): `@automerge/automerge` resolves to its bundler build, which imports the .wasm as an ES module; the README adds vite-plugin-wasm for that, but Vite 8 builds it without the plugin and the app runs (runsInChromium), the .wasm a separate asset, not inlined. Also measured: the slim entry with `initializeWasm(url)` (separate .wasm) and with `initializeBase64Wasm` (inlined as base64).",
    yjs: "Pure JavaScript, no wasm.",
  },
};

// ----------------------------------------------------------------- output shape

/**
 * The workloads as a list: each with `metrics` (a figure per implementation as
 * `{ value }`, or `{ unsupported | pending | error }`) for the summary table, `details`
 * (everything measured, per implementation) and `note` (what it measures).
 */
function shape(raw, warning) {
  const MiB = (b) => round(b / 1048576, 1);
  const pick = (d, f) =>
    Object.fromEntries(
      IMPLS.map((impl) => {
        const r = d?.[impl];
        if (!r) return [impl, { error: "missing" }];
        if (r.unsupported || r.pending || r.error) return [impl, r];
        return [impl, { value: f(r, impl) }];
      }),
    );
  const withNotes = (id, results) =>
    Object.fromEntries(Object.entries(results).map(([impl, r]) => [impl, NOTES[id][impl] ? { ...r, note: NOTES[id][impl] } : r]));
  const out = [];
  const add = (id, name, unit, metrics) => {
    if (!raw[id]) return;
    metrics[0].results = withNotes(id, metrics[0].results);
    if (warning) {
      for (const m of metrics) m.results.nexus = { ...m.results.nexus, note: `DEBUG BUILD of nexus-sync. ${m.results.nexus.note ?? ""}`.trim() };
    }
    out.push({ id, name, unit, better: "lower", note: NOTES[id].what + (NOTES[id].durability ? ` ${NOTES[id].durability}` : ""), metrics, details: raw[id] });
  };
  const d = raw;
  add("4", "local write until durable in IndexedDB", "ms", [
    { name: "local write until durable in IndexedDB, p50", unit: "ms", better: "lower", results: pick(d["4"], (r) => r.p50Ms) },
    { name: "local write until durable in IndexedDB, p99", unit: "ms", better: "lower", results: pick(d["4"], (r) => r.p99Ms) },
  ]);
  add("5", "tab-to-tab visibility of a change", "ms", [
    { name: "tab-to-tab visibility of a change, p50", unit: "ms", better: "lower", results: pick(d["5"], (r) => r.p50Ms) },
    { name: "tab-to-tab visibility of a change, p99", unit: "ms", better: "lower", results: pick(d["5"], (r) => r.p99Ms) },
  ]);
  const docs = N.docs.toLocaleString("en-US");
  add("6", `cold open of ${docs} documents from IndexedDB`, "ms", [
    { name: `cold open of ${docs} documents from IndexedDB`, unit: "ms", better: "lower", results: pick(d["6"], (r) => r.ms) },
    { name: "JS heap after the cold open (after GC)", unit: "MiB", better: "lower", results: pick(d["6"], (r) => MiB(r.jsHeapUsedBytes)) },
    { name: "WebAssembly memory after the cold open", unit: "MiB", better: "lower", results: pick(d["6"], (r) => MiB(r.wasmMemoryBytes)) },
    { name: "longest main-thread task during the cold open", unit: "ms", better: "lower", results: pick(d["6"], (r) => r.longestTaskMs) },
  ]);
  const changes = N.changes.toLocaleString("en-US");
  add("1b", `initial sync of a ${changes}-change document to a fresh browser over WebSocket`, "ms", [
    { name: `initial sync of a ${changes}-change document to a fresh browser over WebSocket`, unit: "ms", better: "lower", results: pick(d["1b"], (r) => r.ms) },
    { name: "longest main-thread task during the initial sync", unit: "ms", better: "lower", results: pick(d["1b"], (r) => r.longestTaskMs) },
  ]);
  if (d["8"]) {
    const app = (label) => d["8"][label];
    const L = Object.keys(SIZE_APPS);
    const [nexusDefault, nexusSlim, amDefault, , amSlim, yjs] = L.map(app);
    const by = { nexus: [nexusDefault, nexusSlim], "automerge-repo": [amDefault, amSlim], yjs: [yjs, yjs] };
    const fig = (i, key) => (d8) => Object.fromEntries(IMPLS.map((impl) => [impl, by[impl][i]?.[key] !== undefined ? { value: by[impl][i][key] } : { error: by[impl][i]?.unsupported ?? "missing" }]));
    add("8", "shipped size of a minimal app (all JS + wasm)", "bytes", [
      { name: "shipped JS + wasm of a minimal app, gzip -9 (default entry)", unit: "bytes", better: "lower", results: fig(0, "gzip9Bytes")() },
      { name: "shipped JS + wasm of a minimal app, raw (default entry)", unit: "bytes", better: "lower", results: fig(0, "rawBytes")() },
      { name: "shipped JS + wasm of a minimal app, gzip -9 (wasm as a separate asset: nexus-sync/slim, automerge-repo/slim)", unit: "bytes", better: "lower", results: fig(1, "gzip9Bytes")() },
    ]);
  }
  return out;
}

// --------------------------------------------------------------------------- table

function table(results) {
  const lines = [];
  const row = (...cells) => lines.push(cells.map((c, i) => String(c ?? "").padEnd(i === 0 ? 66 : 14)).join("").trimEnd());
  const fmt = (v) => (v === undefined ? "" : typeof v === "number" ? v.toLocaleString("en-US") : v);
  const other = (r) => r?.unsupported ?? r?.pending ?? r?.error;
  const w = Object.fromEntries(results.workloads.map((x) => [x.id, x.details]));
  if (w["4"]) {
    lines.push("", "4. local write until durable in IndexedDB (ms)");
    row("", "p50", "p99", "mean", "max");
    for (const i of IMPLS) row(i, ...(other(w["4"][i]) ? [other(w["4"][i])] : [w["4"][i].p50Ms, w["4"][i].p99Ms, w["4"][i].meanMs, w["4"][i].maxMs]));
  }
  if (w["5"]) {
    lines.push("", "5. tab-to-tab visibility of a change (ms)");
    row("", "p50", "p99", "mean", "max");
    for (const i of IMPLS) row(i, ...(other(w["5"][i]) ? [other(w["5"][i])] : [w["5"][i].p50Ms, w["5"][i].p99Ms, w["5"][i].meanMs, w["5"][i].maxMs]));
  }
  if (w["6"]) {
    lines.push("", `6. cold open of ${N.docs.toLocaleString("en-US")} documents from IndexedDB`);
    row("", "best ms", "all at once", "50 at a time", "longest task", "JS heap MiB", "wasm MiB");
    for (const i of IMPLS) {
      const r = w["6"][i];
      if (other(r)) row(i, other(r));
      else
        row(
          i,
          fmt(r.ms),
          fmt(r.msByConcurrency.all),
          fmt(r.msByConcurrency["50"]),
          fmt(r.longestTaskMs),
          (r.jsHeapUsedBytes / 1048576).toFixed(1),
          (r.wasmMemoryBytes / 1048576).toFixed(1),
        );
    }
  }
  if (w["1b"]) {
    lines.push("", `1b. initial sync of a ${N.changes.toLocaleString("en-US")}-change document over WebSocket (loopback)`);
    row("", "synced ms", "longest task", "long tasks");
    for (const i of IMPLS) {
      const r = w["1b"][i];
      if (other(r)) row(i, other(r));
      else row(i, fmt(r.ms), fmt(r.longestTaskMs), r.longTasks);
    }
  }
  if (w["8"]) {
    lines.push("", "8. shipped size of a minimal app (all .js + .wasm)");
    row("", "raw bytes", "gzip -9 bytes");
    for (const [label, r] of Object.entries(w["8"])) {
      if (other(r)) row(label, other(r).slice(0, 100));
      else row(label, fmt(r.rawBytes), fmt(r.gzip9Bytes), r.runsInChromium === false ? `does not run: ${r.runError}` : "");
    }
  }
  return lines.join("\n");
}

// ---------------------------------------------------------------------------- main

async function main() {
  const results = {
    date: new Date().toISOString(),
    machine: { cpus: (await import("node:os")).cpus().length, cpuModel: (await import("node:os")).cpus()[0]?.model },
    chromium: null,
    browser: { executable: "/usr/bin/chromium", args: CHROMIUM_ARGS },
    versions: versions(),
    nexusBuild: await nexusDist(),
    parameters: N,
    workloads: [],
    notes: NOTES,
  };
  const raw = {};
  log(`nexus wasm ${results.nexusBuild.wasmBytes} bytes${results.nexusBuild.looksLikeRelease ? "" : " (NOT a release build)"}`);

  log("building the pages");
  await build({ configFile: join(here, "vite.config.js"), logLevel: "warn" });
  if (only.has("8")) {
    log("8: building the minimal apps");
    raw["8"] = await shippedSizes();
  }
  const after = await nexusDist();
  if (after.wasmSha256 !== results.nexusBuild.wasmSha256) throw new Error("npm/dist changed while building: run again");

  const server = await serveDir(join(here, "dist", "pages"));
  const profileDir = mkdtempSync(join(tmpdir(), "nexus-bench-profile-"));
  let context;
  try {
    context = await launch(profileDir);
    const probe = await openBenchPage(context, server.url, "yjs");
    const version = await browserVersion(probe);
    results.browser = { ...results.browser, ...version };
    results.chromium = `Chromium ${version.product.split("/")[1]} (Debian, headless)`;
    results.versions.chromium = version.product.split("/")[1];
    await probe.close();
    if (raw["8"]) await sizeAppsRun(context, raw["8"]);
    if (only.has("4")) raw["4"] = await durableWrites(context, server.url);
    if (only.has("5")) raw["5"] = await tabToTab(context, server.url);
    if (only.has("1b")) raw["1b"] = await initialSync(context, server.url);
    await context.close();
    context = null;
    if (only.has("6")) raw["6"] = await coldOpen(profileDir, server.url);
  } finally {
    await context?.close().catch(() => {});
    await server.close();
    rmSync(profileDir, { recursive: true, force: true });
  }
  if (!results.nexusBuild.looksLikeRelease) {
    results.warning = `npm/dist held a debug (scripts/build-npm --dev) build of nexus-sync (wasm ${results.nexusBuild.wasmBytes.toLocaleString("en-US")} bytes, modified ${results.nexusBuild.wasmModified}): the Nexus figures are not those of the shipped build; run again after scripts/build-npm.`;
  }
  results.workloads = shape(raw, results.warning);
  results.runtimeSeconds = round((Date.now() - started) / 1000, 1);

  mkdirSync(dirname(opts.out), { recursive: true });
  writeFileSync(opts.out, `${JSON.stringify(results, null, 2)}\n`);
  console.log(`${results.chromium}; nexus wasm ${results.nexusBuild.wasmBytes} bytes${results.nexusBuild.looksLikeRelease ? "" : " (NOT a release build)"}`);
  if (results.warning) console.log(`WARNING: ${results.warning}`);
  console.log(table(results));
  console.log(`\nwritten to ${relative(process.cwd(), opts.out)} in ${results.runtimeSeconds} s`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().then(
    () => process.exit(0),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}

// Pieces of the browser benchmark that other scripts can reuse: the static server for
// the built pages, Chromium through playwright-core, a benchmark page per
// implementation, and the Nexus initial-sync harness (a native `nexus serve` on one
// side, a fresh browser device on the other).
import { createServer } from "node:http";
import { existsSync, readFileSync, statSync } from "node:fs";
import { extname, join, normalize } from "node:path";
import { chromium } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--headless",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

const TYPES = {
  ".html": "text/html",
  ".js": "text/javascript",
  ".css": "text/css",
  ".json": "application/json",
  ".wasm": "application/wasm",
};

/** Serves the files of `dir` on 127.0.0.1 (a free port); resolves with `{ url, close }`. */
export async function serveDir(dir) {
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    const file = join(dir, normalize(path === "/" ? "/index.html" : path).replace(/^(\.\.[/\\])+/, ""));
    if (!file.startsWith(dir) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end("not found");
      return;
    }
    res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream", "cache-control": "no-store" });
    res.end(readFileSync(file));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/`,
    close: () =>
      new Promise((resolve) => {
        server.close(resolve);
        server.closeAllConnections();
      }),
  };
}

/**
 * Collects every WebAssembly.Memory a page instantiates (wasm-bindgen exports its
 * memory), so that the wasm linear memory, which the JS heap figures leave out, can be
 * reported beside them.
 */
const WASM_MEMORY_HOOK = () => {
  window.__wasmMemories = [];
  const note = (result) => {
    const instance = result instanceof WebAssembly.Instance ? result : result?.instance;
    for (const value of Object.values(instance?.exports ?? {})) {
      if (value instanceof WebAssembly.Memory) window.__wasmMemories.push(value);
    }
    return result;
  };
  const instantiate = WebAssembly.instantiate;
  const instantiateStreaming = WebAssembly.instantiateStreaming;
  WebAssembly.instantiate = (...args) => instantiate.apply(WebAssembly, args).then(note);
  if (instantiateStreaming) {
    WebAssembly.instantiateStreaming = (...args) => instantiateStreaming.apply(WebAssembly, args).then(note);
  }
};

/** Chromium with a persistent profile in `dir` (a fresh one per run; reopened for cold starts). */
export async function launch(dir) {
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
  });
  await context.addInitScript(WASM_MEMORY_HOOK);
  for (const page of context.pages()) await page.close().catch(() => {});
  return context;
}

/** A new tab on an implementation's benchmark page, once its `window.bench` is there. */
export async function openBenchPage(context, baseUrl, impl) {
  const page = await context.newPage();
  const log = [];
  page.on("console", (m) => log.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => log.push(`pageerror: ${e.message}`));
  await page.goto(new URL(`${impl}.html`, baseUrl).href);
  await page.waitForFunction("window.benchReady === true", null, { timeout: 30_000 }).catch((e) => {
    throw new Error(`${impl}.html did not load: ${e.message}\n${log.join("\n")}`);
  });
  page.benchLog = log;
  return page;
}

/** Calls `window.bench[name](arg)` in the page. */
export function call(page, name, arg) {
  return page.evaluate(([n, a]) => window.bench[n](a), [name, arg]).catch((e) => {
    const tail = (page.benchLog ?? []).slice(-15).join("\n");
    throw new Error(`bench.${name} failed: ${e.message}${tail ? `\n${tail}` : ""}`);
  });
}

/** JS heap (after a forced GC) and wasm linear memory of a page, in bytes. */
export async function memoryOf(page) {
  const cdp = await page.context().newCDPSession(page);
  try {
    await cdp.send("HeapProfiler.collectGarbage");
    const heap = await cdp.send("Runtime.getHeapUsage");
    const wasm = await page.evaluate(() => (window.__wasmMemories ?? []).reduce((a, m) => a + m.buffer.byteLength, 0));
    return {
      jsHeapUsedBytes: heap.usedSize,
      jsHeapTotalBytes: heap.totalSize,
      ...(heap.embedderHeapUsedSize !== undefined ? { embedderHeapUsedBytes: heap.embedderHeapUsedSize } : {}),
      ...(heap.backingStorageSize !== undefined ? { arrayBufferBackingBytes: heap.backingStorageSize } : {}),
      wasmMemoryBytes: wasm,
    };
  } finally {
    await cdp.detach().catch(() => {});
  }
}

/** The browser's product string (e.g. "HeadlessChrome/148.0.7778.167") and user agent. */
export async function browserVersion(page) {
  const cdp = await page.context().newCDPSession(page);
  try {
    const v = await cdp.send("Browser.getVersion");
    return { product: v.product, userAgent: v.userAgent, jsVersion: v.jsVersion };
  } finally {
    await cdp.detach().catch(() => {});
  }
}

/**
 * Nexus initial sync (workload 1b), browser side. `page` is a nexus benchmark page (from
 * `openBenchPage(context, url, "nexus")`). First `nexusDevice(page, db)` opens the
 * profile's device and returns its DeviceId, for a native side to approve (by id, or by
 * making an invite code); then `nexusInitialSync(page, options)` dials and times until
 * the document is whole:
 *
 * - `address`: a WebSocket multiaddr of `nexus serve`, e.g. `/ip4/127.0.0.1/tcp/4002/ws/p2p/12D3KooW…`
 *   (optional with `inviteCode`, whose addresses are dialed by `join`);
 * - `inviteCode` (redeemed with `nexus.join`) or `vaultId` (the vault the device was approved into);
 * - `docId`;
 * - `expectedHeads` (the native side's heads, hex) or `expect: { key, value }` (a value
 *   the last change wrote).
 *
 * Resolves with `{ ms, vaultMs, keys, longTasks, longestTaskMs, longTaskTotalMs }`.
 */
export async function nexusDevice(page, db) {
  return call(page, "device", { db });
}
export async function nexusInitialSync(page, options) {
  return call(page, "initialSync", options);
}

/** Nearest-rank percentile of `samples` (0 < p ≤ 100). */
export function percentile(samples, p) {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

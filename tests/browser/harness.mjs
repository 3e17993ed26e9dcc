// Helpers for the browser <-> native tests: a static server for the page and the wasm
// package, Debian's Chromium through playwright-core (one persistent profile per
// device), and native `nexus` / `nexus-relay` processes on loopback.
import { spawn, execFileSync } from "node:child_process";
import { createServer } from "node:http";
import { mkdtempSync, readFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, extname, normalize } from "node:path";
import { chromium } from "playwright-core";
import { staticServer, types } from "../../scripts/serve-static.mjs";

const here = new URL(".", import.meta.url).pathname;
export const bin = process.env.NEXUS_BIN_DIR ?? join(here, "../../target/debug");
const pkg = process.env.NEXUS_WASM_PKG ?? join(here, "../../target/nexus-wasm-pkg");
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";


/** Serves page.html at / and the wasm-bindgen output under /pkg/ on 127.0.0.1. */
export async function startServer() {
  if (!existsSync(join(pkg, "nexus_wasm.js"))) {
    throw new Error(`no wasm package in ${pkg}: run scripts/test-browser (it builds one)`);
  }
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    let file;
    if (path === "/") file = join(here, "page.html");
    else if (path.startsWith("/pkg/")) file = join(pkg, normalize(path.slice(5)).replace(/^(\.\.\/)+/, ""));
    if (!file || !existsSync(file)) {
      res.writeHead(404).end("not found");
      return;
    }
    res.writeHead(200, { "content-type": types[extname(file)] ?? "application/octet-stream" });
    res.end(readFileSync(file));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${server.address().port}/`;
  return { url, close: () => new Promise((resolve) => server.close(resolve)) };
}

/**
 * Serves the files of `dir` (a built web app) on 127.0.0.1, as the demo does; paths
 * without a file get index.html, as a single-page app expects.
 */
export async function serveDir(dir) {
  const server = staticServer(dir);
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${server.address().port}/`;
  return { url, close: () => new Promise((resolve) => server.close(resolve)) };
}

/**
 * A browser profile (its own user-data-dir: its own IndexedDB, so its own device) with
 * a page open at `url`, once `ready` (a JavaScript expression) holds in it. The
 * user-data-dir is made under `parent` (the system's temporary directory by default).
 */
export async function openProfile(url, { ready = "window.nexusReady === true", parent = tmpdir() } = {}) {
  const dir = mkdtempSync(join(parent, "nexus-profile-"));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: chromiumPath,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--allow-loopback-in-peer-connection",
    ],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const log = [];
  page.on("console", (m) => log.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => log.push(`pageerror: ${e.message}`));
  await page.goto(url);
  await page.waitForFunction(ready, null, { timeout: 30_000 }).catch(async (e) => {
    await context.close();
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`${url}: ${ready} did not hold: ${e.message}\n${log.join("\n")}`);
  });
  return {
    context,
    page,
    log,
    async close() {
      await context.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Runs `nexus --home HOME ARGS…` and returns its stdout, trimmed. */
export function nexus(home, ...args) {
  return execFileSync(join(bin, "nexus"), ["--home", home, ...args], { encoding: "utf8" }).trim();
}

/** Starts a long-running process and waits until it printed `count` "Listening on" lines. */
export async function startListening(program, args, { count = 1, timeoutMs = 20_000 } = {}) {
  const child = spawn(program, args, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (err += d));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const addresses = [...out.matchAll(/^Listening on (\S+)$/gm)].map((m) => m[1]);
    if (addresses.length >= count) {
      return {
        child,
        addresses,
        output: () => out,
        errors: () => err,
        stop() {
          if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
          child.kill("SIGTERM");
          return new Promise((resolve) => child.once("exit", resolve));
        },
      };
    }
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`${program} did not start listening: ${err}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A fresh temporary directory, removed by the returned function. */
export function tempHome() {
  const dir = mkdtempSync(join(tmpdir(), "nexus-home-"));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Polls `check` (sync or async) until it returns a truthy value, or throws `what`. */
export async function eventually(what, check, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ""}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * What one test file sets up: the page server, desktop homes and daemons, browser
 * profiles; `close()` takes everything down in reverse order.
 */
export class Scene {
  #cleanups = [];

  async start() {
    this.server = await startServer();
    this.#cleanups.push(() => this.server.close());
    return this;
  }

  defer(cleanup) {
    this.#cleanups.push(cleanup);
  }

  async close() {
    for (const cleanup of this.#cleanups.reverse()) {
      try {
        await cleanup();
      } catch {
        // Keep tearing down.
      }
    }
    this.#cleanups = [];
  }

  /** A desktop device with a vault "Family" holding one document titled "Shopping". */
  desktopWithVault() {
    const home = tempHome();
    this.defer(home.remove);
    nexus(home.dir, "init");
    const vault = nexus(home.dir, "vault", "create", "Family");
    const doc = nexus(home.dir, "doc", "create", "--vault", "Family");
    nexus(home.dir, "doc", "put", "--vault", "Family", doc, "title", '"Shopping"');
    return { home: home.dir, vault, doc };
  }

  /** `nexus serve` on `home`, listening on each address given. */
  async serve(home, ...listen) {
    const args = ["--home", home, "serve", "--no-mdns"];
    for (const address of listen) args.push("--listen", address);
    const daemon = await startListening(join(bin, "nexus"), args, { count: listen.length });
    this.defer(() => daemon.stop());
    return daemon;
  }

  /** A browser profile on the test page, or on `url` (see openProfile). */
  async profile(url = this.server.url, options = {}) {
    const profile = await openProfile(url, options);
    this.defer(() => profile.close());
    return profile;
  }
}

/** Opens Nexus in the page as window.n (events go to the page's console); returns the DeviceId. */
export async function openNexus(page, name = "nexus") {
  return page.evaluate(async (name) => {
    window.n = await window.Nexus.open(name);
    const t0 = Date.now();
    await window.n.subscribe((e) => console.log(`${Date.now() - t0} ${JSON.stringify(e)}`));
    return window.n.deviceId;
  }, name);
}

/** Reads a document in the page. */
export function readDoc(page, vault, doc) {
  return page.evaluate(([v, d]) => window.n.read(v, d), [vault, doc]);
}

/** Applies edits in the page; resolves once they are in IndexedDB. */
export function changeDoc(page, vault, doc, edits) {
  return page.evaluate(([v, d, e]) => window.n.change(v, d, e), [vault, doc, edits]);
}

/** `nexus doc get` of a "Family" document. */
export function docGet(home, doc) {
  return JSON.parse(nexus(home, "doc", "get", "--vault", "Family", doc));
}

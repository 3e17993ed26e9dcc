// Browser <-> native sync through the real transports, on loopback: a page running the
// wasm engine (nexus-wasm) in Debian's Chromium syncs a vault with `nexus serve` over
// WebSocket and over WebRTC-direct, and two browser profiles sync through `nexus-relay`
// alone. Run by scripts/test-browser.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  bin,
  eventually,
  nexus,
  openProfile,
  startListening,
  startServer,
  tempHome,
} from "./harness.mjs";

let server;
const cleanups = [];

before(async () => {
  server = await startServer();
});

after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  await server?.close();
});

/** A desktop device with a vault "Family" holding one document titled "Shopping". */
function desktopWithVault() {
  const home = tempHome();
  cleanups.push(home.remove);
  nexus(home.dir, "init");
  const vault = nexus(home.dir, "vault", "create", "Family");
  const doc = nexus(home.dir, "doc", "create", "--vault", "Family");
  nexus(home.dir, "doc", "put", "--vault", "Family", doc, "title", '"Shopping"');
  return { home: home.dir, vault, doc };
}

async function serve(home, ...listen) {
  const args = ["--home", home, "serve", "--no-mdns"];
  for (const address of listen) args.push("--listen", address);
  const daemon = await startListening(join(bin, "nexus"), args, { count: listen.length });
  cleanups.push(() => daemon.stop());
  return daemon;
}

async function profile() {
  const p = await openProfile(server.url);
  cleanups.push(() => p.close());
  return p;
}

/** Opens Nexus in the page and keeps it as window.n. */
async function openNexus(page, name = "nexus") {
  return page.evaluate(async (name) => {
    window.n = await window.Nexus.open(name);
    const t0 = Date.now();
    await window.n.subscribe((e) => console.log(`${Date.now() - t0} ${JSON.stringify(e)}`));
    return window.n.deviceId;
  }, name);
}

function docGet(home, doc) {
  return JSON.parse(nexus(home, "doc", "get", "--vault", "Family", doc));
}

test("a browser joins a desktop's vault over WebSocket and edits meet both ways", async () => {
  const desktop = desktopWithVault();
  await serve(desktop.home, "/ip4/127.0.0.1/tcp/0/ws");
  const code = nexus(desktop.home, "invite", "create", "--vault", "Family", "--expires", "10m");
  const { page, log } = await profile();
  await openNexus(page);

  const vault = await page.evaluate((code) => window.n.join(code), code);
  assert.equal(vault, desktop.vault);
  await eventually("the desktop's document in the browser", () =>
    page.evaluate(
      ([v, d]) => window.n.read(v, d).then((doc) => doc.title === "Shopping"),
      [vault, desktop.doc],
    ),
  ).catch((e) => assert.fail(`${e.message}\n${log.join("\n")}`));

  await page.evaluate(
    ([v, d]) => window.n.change(v, d, [{ op: "put", path: ["fromBrowser"], value: "hi" }]),
    [vault, desktop.doc],
  );
  await eventually("the browser's edit on the desktop", () => docGet(desktop.home, desktop.doc).fromBrowser === "hi");

  nexus(desktop.home, "doc", "put", "--vault", "Family", desktop.doc, "fromDesktop", "2");
  await eventually("the desktop's edit in the browser", () =>
    page.evaluate(([v, d]) => window.n.read(v, d).then((doc) => doc.fromDesktop === 2), [vault, desktop.doc]),
  );
});

test("a browser approved by its DeviceId syncs with a desktop over WebRTC-direct", async () => {
  const desktop = desktopWithVault();
  const daemon = await serve(desktop.home, "/ip4/127.0.0.1/udp/0/webrtc-direct");
  const address = daemon.addresses.find((a) => a.includes("/webrtc-direct/certhash/"));
  assert.ok(address, `a WebRTC-direct address among ${daemon.addresses}`);
  const { page, log } = await profile();
  const device = await openNexus(page);
  nexus(desktop.home, "devices", "approve", "--vault", "Family", device);

  const started = Date.now();
  const peer = await page.evaluate((a) => window.n.connect(a), address);
  console.log(`# WebRTC-direct connection in ${Date.now() - started} ms`);
  assert.ok(address.endsWith(`/p2p/${peer}`));
  await eventually("the vault and its document in the browser", () =>
    page.evaluate(
      ([v, d]) => window.n.read(v, d).then((doc) => doc.title === "Shopping"),
      [desktop.vault, desktop.doc],
    ),
  ).catch((e) => assert.fail(`${e.message}\n${log.join("\n")}`));
  console.log(`# vault synced over WebRTC-direct ${Date.now() - started} ms after dialing`);
  if (process.env.NEXUS_TEST_DEBUG || Date.now() - started > 3000) console.log(daemon.errors(), daemon.output(), log.join("\n"));
  await page.evaluate(
    ([v, d]) => window.n.change(v, d, [{ op: "put", path: ["overWebRtc"], value: true }]),
    [desktop.vault, desktop.doc],
  );
  await eventually("the browser's edit on the desktop", () => docGet(desktop.home, desktop.doc).overWebRtc === true);
});

test("two browser profiles sync through the relay alone", async () => {
  const relayDir = tempHome();
  cleanups.push(relayDir.remove);
  const relay = await startListening(join(bin, "nexus-relay"), [
    "--identity", join(relayDir.dir, "relay.key"),
    "--listen", "/ip4/127.0.0.1/tcp/0/ws",
    "--no-metrics",
  ]);
  cleanups.push(() => relay.stop());
  const relayAddress = relay.addresses[0];

  const alice = await profile();
  const bob = await profile();
  await openNexus(alice.page);
  const bobId = await openNexus(bob.page);

  const { vault, doc, code } = await alice.page.evaluate(async (relayAddress) => {
    const n = window.n;
    const vault = await n.createVault("Notes");
    const doc = await n.createDocument(vault, { title: "From Alice" });
    await n.connect(relayAddress);
    // The invite carries the circuit address: wait for the relay's reservation.
    for (let i = 0; i < 100 && (await n.status()).reachableAt.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    const code = await n.createInvite(vault, 600, "member");
    return { vault, doc, code };
  }, relayAddress);

  const joined = await bob.page
    .evaluate((code) => window.n.join(code), code)
    .catch((e) => assert.fail(`${e.message}\nalice:\n${alice.log.join("\n")}\nbob:\n${bob.log.join("\n")}`));
  assert.equal(joined, vault);
  await eventually("Alice's document at Bob", () =>
    bob.page.evaluate(([v, d]) => window.n.read(v, d).then((x) => x.title === "From Alice"), [vault, doc]),
  );
  await bob.page.evaluate(
    ([v, d]) => window.n.change(v, d, [{ op: "put", path: ["bob"], value: "was here" }]),
    [vault, doc],
  );
  await eventually("Bob's edit at Alice", () =>
    alice.page.evaluate(([v, d]) => window.n.read(v, d).then((x) => x.bob === "was here"), [vault, doc]),
  );
  const devices = await alice.page.evaluate((v) => window.n.devices(v), vault);
  assert.ok(devices.some((d) => d.deviceId === bobId && d.status === "member"));
});

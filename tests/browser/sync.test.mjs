// Browser <-> native sync through the real transports, on loopback: a page running the
// wasm engine (nexus-wasm) in Debian's Chromium syncs a vault with `nexus serve` over
// WebSocket and over WebRTC-direct, and two browser profiles sync through `nexus-relay`
// alone. Run by scripts/test-browser.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  Scene,
  bin,
  changeDoc,
  docGet,
  eventually,
  nexus,
  openNexus,
  readDoc,
  startListening,
  tempHome,
} from "./harness.mjs";

const scene = new Scene();
before(() => scene.start());
after(() => scene.close());

test("a browser joins a desktop's vault over WebSocket and edits meet both ways", async () => {
  const desktop = scene.desktopWithVault();
  await scene.serve(desktop.home, "/ip4/127.0.0.1/tcp/0/ws");
  const code = nexus(desktop.home, "invite", "create", "--vault", "Family", "--expires", "10m");
  const { page, log } = await scene.profile();
  await openNexus(page);

  const vault = await page.evaluate((code) => window.n.join(code), code);
  assert.equal(vault, desktop.vault);
  await eventually("the desktop's document in the browser", async () =>
    (await readDoc(page, vault, desktop.doc)).title === "Shopping",
  ).catch((e) => assert.fail(`${e.message}\n${log.join("\n")}`));

  await changeDoc(page, vault, desktop.doc, [{ op: "put", path: ["fromBrowser"], value: "hi" }]);
  await eventually("the browser's edit on the desktop", () => docGet(desktop.home, desktop.doc).fromBrowser === "hi");

  nexus(desktop.home, "doc", "put", "--vault", "Family", desktop.doc, "fromDesktop", "2");
  await eventually("the desktop's edit in the browser", async () =>
    (await readDoc(page, vault, desktop.doc)).fromDesktop === 2,
  );
});

test("a browser approved by its DeviceId syncs with a desktop over WebRTC-direct", async () => {
  const desktop = scene.desktopWithVault();
  const daemon = await scene.serve(desktop.home, "/ip4/127.0.0.1/udp/0/webrtc-direct");
  const address = daemon.addresses.find((a) => a.includes("/webrtc-direct/certhash/"));
  assert.ok(address, `a WebRTC-direct address among ${daemon.addresses}`);
  const { page, log } = await scene.profile();
  const device = await openNexus(page);
  nexus(desktop.home, "devices", "approve", "--vault", "Family", device);

  const started = Date.now();
  const peer = await page.evaluate((a) => window.n.connect(a), address);
  assert.ok(address.endsWith(`/p2p/${peer}`));
  console.log(`# WebRTC-direct connection in ${Date.now() - started} ms`);
  await eventually("the vault and its document in the browser", async () =>
    (await readDoc(page, desktop.vault, desktop.doc)).title === "Shopping",
  ).catch((e) => assert.fail(`${e.message}\n${log.join("\n")}`));
  console.log(`# vault synced over WebRTC-direct ${Date.now() - started} ms after dialing`);
  await changeDoc(page, desktop.vault, desktop.doc, [{ op: "put", path: ["overWebRtc"], value: true }]);
  await eventually("the browser's edit on the desktop", () => docGet(desktop.home, desktop.doc).overWebRtc === true);
});

/** A `nexus-relay` on loopback WebSocket, stopped with the scene; returns its address. */
async function startRelay() {
  const relayDir = tempHome();
  scene.defer(relayDir.remove);
  const relay = await startListening(join(bin, "nexus-relay"), [
    "--identity", join(relayDir.dir, "relay.key"),
    "--listen", "/ip4/127.0.0.1/tcp/0/ws",
    "--no-metrics",
  ]);
  scene.defer(() => relay.stop());
  return relay.addresses[0];
}

test("two browser profiles sync through the relay alone", async () => {
  const relayAddress = await startRelay();

  const alice = await scene.profile();
  const bob = await scene.profile();
  await openNexus(alice.page);
  const bobId = await openNexus(bob.page);

  const { vault, doc, code, reachable } = await alice.page.evaluate(async (relayAddress) => {
    const n = window.n;
    const vault = await n.createVault("Notes");
    const doc = await n.createDocument(vault, { title: "From Alice" });
    // connect to a relay resolves once the slot there holds: the invite made right
    // after it carries the circuit address, with no waiting by the app.
    await n.connect(relayAddress);
    const reachable = (await n.status()).reachableAt.length;
    const code = await n.createInvite(vault, 600, "member");
    return { vault, doc, code, reachable };
  }, relayAddress);
  assert.ok(reachable > 0, "reachable through the relay when connect resolved");

  const joined = await bob.page
    .evaluate((code) => window.n.join(code), code)
    .catch((e) => assert.fail(`${e.message}\nalice:\n${alice.log.join("\n")}\nbob:\n${bob.log.join("\n")}`));
  assert.equal(joined, vault);
  await eventually("Alice's document at Bob", async () => (await readDoc(bob.page, vault, doc)).title === "From Alice");
  await changeDoc(bob.page, vault, doc, [{ op: "put", path: ["bob"], value: "was here" }]);
  await eventually("Bob's edit at Alice", async () => (await readDoc(alice.page, vault, doc)).bob === "was here");
  const devices = await alice.page.evaluate((v) => window.n.devices(v), vault);
  assert.ok(devices.some((d) => d.deviceId === bobId && d.status === "member"));
  // The invite shows as redeemed by Bob; a second one, cancelled, shows as cancelled.
  const invites = await alice.page.evaluate(async (v) => {
    await window.n.createInvite(v, 600, "admin");
    const fresh = (await window.n.invites(v)).find((i) => i.state === "open");
    await window.n.cancelInvite(v, fresh.id);
    return window.n.invites(v);
  }, vault);
  invites.sort((a, b) => a.role.localeCompare(b.role));
  assert.deepEqual(invites.map((i) => [i.role, i.state]), [["admin", "cancelled"], ["member", "redeemed"]]);
  assert.equal(invites[1].redeemedBy, bobId);
});

test("an invite made before the inviter was reachable is redeemed through the relay the joiner uses", async () => {
  const relayAddress = await startRelay();
  const alice = await scene.profile();
  const bob = await scene.profile();
  await openNexus(alice.page);
  await openNexus(bob.page);
  // Made offline: the code names Alice's device but no address to reach it at.
  const { vault, code } = await alice.page.evaluate(async () => {
    const vault = await window.n.createVault("Offline invite");
    const code = await window.n.createInvite(vault, 600, "member");
    return { vault, code, reachable: (await window.n.status()).reachableAt.length };
  });
  await alice.page.evaluate((a) => window.n.connect(a), relayAddress);
  await bob.page.evaluate((a) => window.n.connect(a), relayAddress);
  const joined = await bob.page
    .evaluate((code) => window.n.join(code), code)
    .catch((e) => assert.fail(`${e.message}\nalice:\n${alice.log.join("\n")}\nbob:\n${bob.log.join("\n")}`));
  assert.equal(joined, vault, "Bob found Alice under her device's name at the relay");
});

test("a connection refused by the other side fails at once, not after the connect timeout", async () => {
  const { createServer } = await import("node:net");
  const server = createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  const { page } = await scene.profile();
  await openNexus(page);
  const started = Date.now();
  const outcome = await page.evaluate(
    (a) => window.n.connect(a).then(() => ({ connected: true }), (e) => ({ code: e.code, message: e.message })),
    `/ip4/127.0.0.1/tcp/${port}/ws`,
  );
  const elapsed = Date.now() - started;
  console.log(`# refused in ${elapsed} ms: ${JSON.stringify(outcome)}`);
  assert.ok(!outcome.connected, "nothing listens there");
  assert.equal(outcome.code, "CONNECT");
  assert.match(outcome.message, /closed before it opened: refused, or nothing listens there/);
  assert.doesNotMatch(outcome.message, /no connection within/, "it failed because it was refused");
});

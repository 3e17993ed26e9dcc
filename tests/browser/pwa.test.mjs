// Nexus Notes (web-demo/), the PWA on the nexus-sync package, driven through its UI in
// Debian's Chromium: it installs (manifest, service worker) and starts offline with its
// notes; two browser profiles and a desktop edit the same notes through a relay, and a
// revoked profile's edits stop travelling; and the screenshots in docs/screenshots are
// taken (written when NEXUS_SCREENSHOTS=1). Needs scripts/build-web-demo to have run.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Scene, bin, docGet, eventually, nexus, serveDir, startListening, tempHome } from "./harness.mjs";

const here = new URL(".", import.meta.url).pathname;
const dist = join(here, "../../web-demo/dist");
const screenshots = join(here, "../../docs/screenshots");
const WS = "/ip4/127.0.0.1/tcp/0/ws";

const scene = new Scene();
let app;

before(async () => {
  assert.ok(existsSync(join(dist, "sw.js")), `no built app in ${dist}: run scripts/build-web-demo`);
  app = await serveDir(dist);
  scene.defer(() => app.close());
});
after(() => scene.close());

/** A browser profile (a device of its own) on the app, once it is open. */
async function openApp(query = "") {
  const profile = await scene.profile(`${app.url}${query}`, { ready: "window.demoReady === true" });
  const fail = (e) => assert.fail(`${e.message}\n${profile.log.join("\n")}`);
  return { ...profile, fail };
}

/** Fails on uncaught exceptions in the page. */
function noPageErrors({ log }) {
  assert.deepEqual(log.filter((line) => line.startsWith("pageerror")), [], "no uncaught exceptions in the page");
}

const showTab = (page, tab) => page.click(`.tab[data-tab="${tab}"]`);
const noteItem = (page, title) => page.locator(".note-item", { has: page.locator(".note-item-title", { hasText: title }) });

/** Waits until the Notes screen shows vault `name`. */
function showsVault({ page, fail }, name, timeout = 60_000) {
  return page
    .waitForFunction((name) => document.querySelector("#notes-heading")?.textContent === name && !document.querySelector("#screen-notes").hidden, name, { timeout })
    .catch(fail);
}

/** Redeems `code` on the Invites screen and waits for the vault's notes. */
async function joinByCode(profile, code, vaultName = "Family") {
  await showTab(profile.page, "invites");
  await profile.page.fill("#join-code", code);
  await profile.page.click("#join-button");
  await showsVault(profile, vaultName);
}

/** Opens the note titled `title` and waits for its editor. */
async function openNote(page, title) {
  await showTab(page, "notes");
  await noteItem(page, title).click();
  await page.waitForSelector("#note-body");
}

/** Types `text` at the end of the open note's body and waits until it is stored. */
async function typeAtEnd(page, text) {
  await page.focus("#note-body");
  await page.keyboard.press("Control+End");
  await page.keyboard.type(text);
  await saved(page);
}

const saved = (page) => page.waitForFunction(() => document.querySelector("#save-state")?.textContent === "Saved on this device", null, { timeout: 10_000 });

/** Creates a note through the UI; returns its document id. */
async function newNote(page, title, body) {
  await showTab(page, "notes");
  await page.click("#new-note");
  await page.waitForSelector("#note-title");
  await page.fill("#note-title", title);
  await page.focus("#note-body");
  await page.keyboard.type(body);
  await saved(page);
  return page.evaluate(() => document.querySelector(".note-item.selected").dataset.id);
}

/** The body of note `id` as the page's handle holds it. */
const bodyIn = (page, id) => page.evaluate((id) => window.demo.views.notes.store?.handle(id)?.doc().body, id);

/**
 * Reloads `page` while its context is offline. Chromium's offline emulation still
 * blocks the network for the new document but leaves its navigator.onLine true, so
 * the emulation is sent again through CDP (as tabs.test.mjs does) to tell the page.
 * The session stays attached (detaching it tells the page it is online again); the
 * emulation is one per page, so `context.setOffline(false)` later ends it.
 */
let reloads = 0;
async function reloadOffline({ page, context, fail }) {
  await page.reload();
  await page.waitForFunction(() => window.demoReady === true, null, { timeout: 30_000 }).catch(fail);
  const served = await page.evaluate(() => performance.getEntriesByType("navigation")[0].workerStart > 0);
  assert.ok(served, "the page came through the service worker");
  const cdp = await context.newCDPSession(page);
  // Only changed conditions (still offline) reach the page: a new latency each time.
  await cdp.send("Network.emulateNetworkConditions", { offline: true, latency: ++reloads, downloadThroughput: -1, uploadThroughput: -1 });
  const probe = await page.evaluate(() => fetch(`/not-cached-${Math.random()}`).then((r) => `HTTP ${r.status}`, () => "no network"));
  assert.equal(probe, "no network", "the page has no network");
  await page.waitForFunction(() => navigator.onLine === false, null, { timeout: 5000 });
}

/** Width and height from a PNG's IHDR. */
function pngSize(bytes) {
  assert.equal(bytes.subarray(1, 4).toString(), "PNG", "a PNG file");
  return [bytes.readUInt32BE(16), bytes.readUInt32BE(20)];
}

test("installable, and after the first visit it starts and edits offline; the edits reach the desktop later", async () => {
  const desktop = scene.desktopWithVault();
  await scene.serve(desktop.home, WS);
  const code = nexus(desktop.home, "invite", "create", "--vault", "Family", "--expires", "10m");
  // ?invite= fills the join form in; a ?connect= address that cannot work is reported on
  // the Sync screen, not thrown.
  const profile = await openApp(`?invite=${encodeURIComponent(code)}&connect=not-an-address`);
  const { page, context, fail } = profile;
  assert.equal(await page.inputValue("#join-code"), code);
  assert.ok(await page.isVisible("#join-code"), "the join form is shown");
  await showTab(page, "sync");
  await page.waitForSelector('#connect-message[data-kind="error"]', { timeout: 10_000 });
  assert.match(await page.textContent("#connect-message"), /^Could not connect: .*invalid multiaddr/);

  // The manifest is linked and describes an installable app with its icons.
  const { manifestUrl, manifest } = await page.evaluate(async () => {
    const link = document.querySelector('link[rel="manifest"]');
    return { manifestUrl: link.href, manifest: await (await fetch(link.href)).json() };
  });
  assert.equal(manifest.name, "Nexus Notes");
  assert.equal(manifest.display, "standalone");
  assert.ok(manifest.start_url && manifest.scope && manifest.theme_color);
  const pngs = manifest.icons.filter((i) => i.type === "image/png");
  for (const size of ["192x192", "512x512"]) assert.ok(pngs.some((i) => i.sizes === size && i.purpose.includes("any")), `a ${size} icon`);
  assert.ok(pngs.some((i) => i.purpose.includes("maskable")), "a maskable icon");
  for (const icon of pngs) {
    const bytes = Buffer.from(await (await fetch(new URL(icon.src, manifestUrl))).arrayBuffer());
    assert.equal(pngSize(bytes).join("x"), icon.sizes, icon.src);
  }

  // The service worker is activated, controls the page and holds the app shell.
  await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 30_000 }).catch(fail);
  const worker = await page.evaluate(async () => {
    const registration = await navigator.serviceWorker.ready;
    const names = await caches.keys();
    const cached = (await (await caches.open(names[0])).keys()).map((r) => new URL(r.url).pathname);
    return { state: registration.active.state, names, cached };
  });
  assert.equal(worker.state, "activated");
  assert.equal(worker.names.length, 1);
  assert.match(worker.names[0], /^nexus-notes-[0-9a-f]{12}$/);
  for (const file of ["/index.html", "/manifest.webmanifest", "/icons/icon-192.png", "/icons/icon-512.png", "/icons/maskable-512.png"]) {
    assert.ok(worker.cached.includes(file), `${file} is precached (${worker.cached})`);
  }
  assert.ok(worker.cached.some((f) => /^\/assets\/index-.*\.js$/.test(f)), "the bundle (with the wasm) is precached");

  // Online: join the desktop's vault with the code filled in, and write a note.
  await showTab(page, "invites");
  await page.click("#join-button");
  await showsVault(profile, "Family");
  await noteItem(page, "Shopping").waitFor({ timeout: 30_000 }).catch(fail);
  const packing = await newNote(page, "Packing list", "passport");

  // Offline: the app starts from the cache, with its notes, and takes edits.
  await context.setOffline(true);
  await reloadOffline(profile);
  assert.equal(await page.evaluate(() => navigator.onLine), false);
  await noteItem(page, "Packing list").waitFor({ timeout: 10_000 });
  await noteItem(page, "Shopping").waitFor({ timeout: 10_000 });
  assert.equal(await page.textContent("#sync-indicator"), "Offline");
  await openNote(page, "Packing list");
  assert.equal(await page.inputValue("#note-body"), "passport");
  await typeAtEnd(page, "\ntickets");
  const offlineNote = await newNote(page, "Written offline", "on the train");

  await reloadOffline(profile);
  await openNote(page, "Packing list");
  assert.equal(await page.inputValue("#note-body"), "passport\ntickets");
  await openNote(page, "Written offline");
  assert.equal(await page.inputValue("#note-body"), "on the train");

  // Back online: the offline edits reach the desktop.
  await context.setOffline(false);
  await eventually("the offline edit on the desktop", () => docGet(desktop.home, packing).body === "passport\ntickets", 45_000).catch(fail);
  await eventually("the note written offline on the desktop", () => docGet(desktop.home, offlineNote).body === "on the train", 20_000);
  const listed = nexus(desktop.home, "doc", "list", "--vault", "Family");
  assert.ok(listed.includes(packing) && listed.includes(offlineNote), `both notes in the desktop's list:\n${listed}`);
  assert.equal(docGet(desktop.home, offlineNote).title, "Written offline");
  noPageErrors(profile);
});

test("two profiles and a desktop edit the same note through a relay; a revoked profile's edits stop travelling", async () => {
  const relayDir = tempHome();
  scene.defer(relayDir.remove);
  const relay = await startListening(join(bin, "nexus-relay"), ["--identity", join(relayDir.dir, "relay.key"), "--listen", WS, "--no-metrics"]);
  scene.defer(() => relay.stop());
  const relayAddress = relay.addresses[0];

  const desktop = scene.desktopWithVault();
  const daemon = await startListening(join(bin, "nexus"), ["--home", desktop.home, "serve", "--no-mdns", "--listen", WS, "--relay", relayAddress]);
  scene.defer(() => daemon.stop());
  const code = nexus(desktop.home, "invite", "create", "--vault", "Family", "--expires", "10m");

  // A joins by typing the invite code.
  const a = await openApp();
  await joinByCode(a, code);
  await noteItem(a.page, "Shopping").waitFor({ timeout: 30_000 }).catch(a.fail);

  // B dials the relay (?connect=) and is approved by the DeviceId its Devices screen shows.
  const b = await openApp(`?connect=${encodeURIComponent(relayAddress)}`);
  await showTab(b.page, "devices");
  const bId = (await b.page.textContent("#device-id")).trim();
  assert.match(bId, /^12D3KooW/);
  await eventually("B connected to the relay", () => b.page.evaluate(() => window.demo.app.lastConnect?.state === "ok")).catch(b.fail);
  nexus(desktop.home, "devices", "approve", "--vault", "Family", bId);
  // An approval B never asked for: it waits, named, until the person accepts it.
  const offer = b.page.locator(`.banner.offer`);
  await offer.waitFor({ timeout: 60_000 }).catch(b.fail);
  assert.match(await offer.textContent(), /Join “Family”\?/);
  assert.equal(await b.page.evaluate(async () => (await window.demo.nexus.vaults()).length), 0, "nothing held before accepting");
  if (process.env.NEXUS_OFFER_SHOT) await b.page.screenshot({ path: process.env.NEXUS_OFFER_SHOT });
  await b.page.click(".accept-offer");
  await showTab(b.page, "notes");
  await noteItem(b.page, "Shopping").waitFor({ timeout: 60_000 }).catch(b.fail);

  // Edits in each profile reach the other and the desktop.
  await openNote(a.page, "Shopping");
  await typeAtEnd(a.page, "milk");
  await openNote(b.page, "Shopping");
  await eventually("A's edit at B", async () => (await b.page.inputValue("#note-body")) === "milk").catch(b.fail);
  await typeAtEnd(b.page, "\neggs");
  await eventually("B's edit at A", async () => (await a.page.inputValue("#note-body")) === "milk\neggs").catch(a.fail);
  await eventually("both edits on the desktop", () => docGet(desktop.home, desktop.doc).body === "milk\neggs");

  // A remote insert before A's cursor keeps the cursor where A was typing.
  await a.page.focus("#note-body");
  await a.page.keyboard.press("Control+End");
  await b.page.focus("#note-body");
  await b.page.keyboard.press("Control+Home");
  await b.page.keyboard.type("List: ");
  await saved(b.page);
  await eventually("B's insert at A", async () => (await a.page.inputValue("#note-body")) === "List: milk\neggs");
  const cursor = await a.page.evaluate(() => [document.activeElement.id, document.activeElement.selectionStart]);
  assert.deepEqual(cursor, ["note-body", "List: milk\neggs".length], "A's cursor stays at the end of the text");

  // The desktop revokes B: B says so and goes read-only; what B writes anyway stays with B.
  nexus(desktop.home, "devices", "revoke", "--vault", "Family", bId);
  await b.page.waitForSelector("#removed-banner:not([hidden])", { timeout: 30_000 }).catch(b.fail);
  assert.match(await b.page.textContent("#removed-banner"), /This device was removed from Family; its edits no longer sync/);
  assert.equal(await b.page.getAttribute("#note-body", "readonly"), "");
  const attempt = await b.page.evaluate(async (id) => {
    const handle = window.demo.views.notes.store.handle(id);
    try {
      await handle.change((d) => {
        d.fromRevoked = "should not travel";
      });
      return "stored locally";
    } catch (e) {
      return `refused: ${e.code}`;
    }
  }, desktop.doc);
  console.log(`B edited after revocation: ${attempt}`);

  await typeAtEnd(a.page, "\nbread");
  await eventually("A's later edit on the desktop", () => docGet(desktop.home, desktop.doc).body === "List: milk\neggs\nbread");
  const deadline = Date.now() + 4000;
  while (Date.now() < deadline) {
    assert.equal(docGet(desktop.home, desktop.doc).fromRevoked, undefined, "B's edit after revocation reached the desktop");
    assert.equal(await a.page.evaluate((id) => window.demo.views.notes.store.handle(id).doc().fromRevoked, desktop.doc), undefined, "B's edit after revocation reached A");
    await new Promise((r) => setTimeout(r, 500));
  }
  noPageErrors(a);
  noPageErrors(b);
});

test("screenshots of every screen on a phone and a desktop (written with NEXUS_SCREENSHOTS=1)", async () => {
  const relayDir = tempHome();
  scene.defer(relayDir.remove);
  const relay = await startListening(join(bin, "nexus-relay"), ["--identity", join(relayDir.dir, "relay.key"), "--listen", WS, "--no-metrics"]);
  scene.defer(() => relay.stop());
  const desktop = scene.desktopWithVault();
  nexus(desktop.home, "doc", "put", "--vault", "Family", desktop.doc, "updated", String(Date.now() - 3 * 3600_000));
  await scene.serve(desktop.home, WS);
  const code = nexus(desktop.home, "invite", "create", "--vault", "Family", "--expires", "10m", "--role", "admin");

  const profile = await openApp();
  const { page, context, fail } = profile;
  await joinByCode(profile, code);
  await openNote(page, "Shopping");
  await typeAtEnd(page, "Oat milk\nEggs (a dozen)\nSourdough\nLemons\nCoffee beans");
  await newNote(page, "Weekend in Lisbon", "Fri: fly out 18:40, check in at the flat near Alfama.\nSat: tram 28 early, Belém in the afternoon, pastéis de nata.\nSun: LX Factory, sunset at Miradouro da Senhora do Monte.");
  await newNote(page, "Book club — March", "“Piranesi” by Susanna Clarke.\nQuestions: the House as a character; what the statues mean; Matthew Rose Sorensen vs. Piranesi.");
  await newNote(page, "Ideas", "Sync the garden planting calendar between phones.");

  // A note deleted through the UI leaves the list.
  await newNote(page, "Scratch", "to be deleted");
  await page.click("#delete-note");
  await page.click("#delete-note");
  await noteItem(page, "Scratch").waitFor({ state: "detached", timeout: 10_000 });

  // A second vault brings the vault switcher; back to Family with it.
  await showTab(page, "invites");
  await page.fill("#new-vault-name", "Work");
  await page.click("#create-vault");
  await showsVault(profile, "Work", 10_000);
  await page.waitForSelector("#notes-list-empty:not([hidden])");
  await page.selectOption("#vault-select", { label: "Family" });
  await showsVault(profile, "Family", 10_000);
  await noteItem(page, "Ideas").waitFor({ timeout: 10_000 });

  // Devices: two more devices approved through the UI, one of them revoked again.
  const others = [0, 1].map(() => {
    const home = tempHome();
    scene.defer(home.remove);
    return nexus(home.dir, "init").match(/12D3KooW\w+/)[0];
  });
  await showTab(page, "devices");
  for (const id of others) {
    await page.fill("#approve-id", id);
    await page.click("#approve-button");
    await page.waitForSelector(`#device-list .row[data-device="${id}"]`);
  }
  await page.click(`#device-list .revoke[data-device="${others[1]}"]`);
  await page.click(`#device-list .revoke[data-device="${others[1]}"]`);
  await page.waitForSelector(`#device-list .row.revoked[data-device="${others[1]}"]`);

  // Sync: connected to the relay through the form.
  await showTab(page, "sync");
  await page.fill("#connect-address", relay.addresses[0]);
  await page.click("#connect-button");
  await page.waitForSelector('#connect-message[data-kind="ok"]', { timeout: 30_000 }).catch(fail);
  await eventually("a relay address", () => page.evaluate(() => window.demo.app.status.reachableAt.length > 0)).catch(fail);

  // Invites: a fresh code.
  await showTab(page, "invites");
  await page.click("#create-invite");
  await page.waitForSelector("#invite-result:not([hidden]) #invite-qr svg");

  const write = process.env.NEXUS_SCREENSHOTS === "1";
  if (write) mkdirSync(screenshots, { recursive: true });
  // Phones at twice the pixels (as they show them), through CDP: a persistent
  // context's pixel ratio is fixed at launch.
  const cdp = await context.newCDPSession(page);
  let size;
  async function resize(width, height, phone) {
    size = { width, height, phone };
    await page.setViewportSize({ width, height });
    await cdp.send("Emulation.setDeviceMetricsOverride", { width, height, deviceScaleFactor: phone ? 2 : 1, mobile: phone });
  }
  async function shot(name) {
    await page.evaluate(() => document.activeElement?.blur());
    await page.mouse.move(0, 0);
    await page.waitForTimeout(300);
    const { data } = await cdp.send("Page.captureScreenshot", { format: "png" });
    const png = Buffer.from(data, "base64");
    const scale = size.phone ? 2 : 1;
    assert.deepEqual(pngSize(png), [size.width * scale, size.height * scale], `${name} at its size`);
    if (write) writeFileSync(join(screenshots, `web-demo-${name}.png`), png);
  }

  // Phone: the list of notes, then the other screens.
  await resize(390, 844, true);
  await showTab(page, "notes");
  if (await page.isVisible(".editor .back")) await page.click(".editor .back");
  await shot("notes-phone");
  for (const tab of ["sync", "devices", "invites"]) {
    await showTab(page, tab);
    await shot(`${tab}-phone`);
  }
  // Desktop: a note open beside the list, and the devices.
  await resize(1280, 800, false);
  await openNote(page, "Weekend in Lisbon");
  await shot("notes-desktop");
  await showTab(page, "devices");
  await shot("devices-desktop");
  noPageErrors(profile);
  await cdp.send("Emulation.clearDeviceMetricsOverride");
});

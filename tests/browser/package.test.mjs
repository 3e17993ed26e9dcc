// The npm package as users install it: a copy of examples/vite-app installs its lockfile
// with the package's files taken from the packed tarball (scripts/build-npm), Vite builds
// the app, and the built page syncs with a native `nexus serve` over WebSocket on
// loopback. The slim entry (wasm loaded from a URL), the package's TypeScript types, and
// the agreement of handle, draft and engine after changes are checked too. Run by
// scripts/test-browser.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Scene, docGet, eventually, nexus, serveDir, tempHome } from "./harness.mjs";

const here = new URL(".", import.meta.url).pathname;
const example = join(here, "../../examples/vite-app");
const tarball = process.env.NEXUS_NPM_TARBALL && resolve(process.env.NEXUS_NPM_TARBALL);
const npmOptions = ["--no-audit", "--no-fund", "--loglevel=error", "--prefer-offline"];

const scene = new Scene();
let app;

before(async () => {
  assert.ok(tarball, "NEXUS_NPM_TARBALL names the packed package (scripts/test-browser sets it)");
  await scene.start();
  // The example's own layout and lockfile, with npm/ replaced by the packed tarball's
  // content: what `npm pack` ships is all the app gets.
  const root = mkdtempSync(join(tmpdir(), "nexus-vite-app-"));
  scene.defer(() => rmSync(root, { recursive: true, force: true }));
  app = join(root, "examples/vite-app");
  cpSync(example, app, { recursive: true, filter: (src) => !/node_modules|dist$/.test(src) });
  execFileSync("tar", ["xzf", tarball, "-C", root]);
  renameSync(join(root, "package"), join(root, "npm"));
  execFileSync("npm", ["ci", ...npmOptions], { cwd: app, stdio: "inherit" });
  execFileSync("npx", ["vite", "build", "--logLevel", "error"], { cwd: app, stdio: "inherit" });
  const server = await serveDir(join(app, "dist"));
  scene.defer(() => server.close());
  app = { dir: app, url: server.url };
});
after(() => scene.close());

test("a Vite app built against the packed package joins a desktop's vault and syncs", async () => {
  const desktop = scene.desktopWithVault();
  await scene.serve(desktop.home, "/ip4/127.0.0.1/tcp/0/ws");
  const code = nexus(desktop.home, "invite", "create", "--vault", "Family", "--expires", "10m");
  const { page, log } = await scene.profile(app.url, { ready: "window.exampleReady === true" });

  await page.fill("#code", code);
  await page.click("#join button");
  await page.waitForSelector("#add:not([hidden])", { timeout: 60_000 }).catch((e) =>
    assert.fail(`${e.message}\n${log.join("\n")}`),
  );
  await page.fill("#item", "milk");
  await page.click("#add button");
  await eventually("the item on the desktop", () => docGet(desktop.home, desktop.doc).items?.[0] === "milk");

  nexus(desktop.home, "doc", "put", "--vault", "Family", desktop.doc, "items", '["milk","eggs"]');
  await eventually("the desktop's list in the page", async () =>
    (await page.locator("#items li").allTextContents()).join(",") === "milk,eggs",
  );
});

test("the slim entry loads nexus.wasm from a URL and edits text", async () => {
  const assets = readdirSync(join(app.dir, "dist/assets"));
  assert.ok(assets.some((f) => f.endsWith(".wasm")), `a .wasm file among ${assets}`);
  const { page, log } = await scene.profile(`${app.url}slim.html`, { ready: "window.slimResult !== undefined" }).catch(
    (e) => assert.fail(e.message),
  );
  const result = await page.evaluate(() => window.slimResult);
  assert.equal(result.note, "hello, world", log.join("\n"));
  assert.match(result.deviceId, /^12D3KooW/);
});

test("the package's types check in a TypeScript file that uses both entries", () => {
  const file = join(app.dir, "check.ts");
  writeFileSync(
    file,
    `import { Nexus, NexusError, text, splice, type DocHandle, type NexusErrorCode, type Patch } from "nexus-sync";
import { initializeWasm } from "nexus-sync/slim";
interface Note { title: string; body: string; tags: string[] }
export async function demo(url: string): Promise<Patch[]> {
  await initializeWasm(url);
  const nexus = await Nexus.open({ name: "x" });
  const vault = await nexus.createVault("Notes");
  const handle: DocHandle<Note> = await vault.create<Note>({ title: "a", body: text("b"), tags: [] });
  await handle.change((d) => { d.title = "c"; d.tags.push("t"); splice(d, "body", 0, 0, "x"); });
  const code: string = await vault.createInvite({ expiresInSeconds: 60, role: "member" });
  let seen: Patch[] = [];
  handle.on("change", ({ doc, patches }) => { seen = patches; doc.title.toUpperCase(); });
  const heads: string[] = await handle.change((d) => { d.title = "d"; }, { message: "retitle" });
  try {
    await vault.find("x", { timeoutMs: 100 });
  } catch (e) {
    if (e instanceof NexusError) {
      const why: NexusErrorCode = e.code;
      if (why === "UNAVAILABLE" && heads.length > 0) return [];
    }
  }
  return code.length > 0 ? seen : [];
}
`,
  );
  const tsc = join(here, "../../npm/node_modules/.bin/tsc");
  execFileSync(tsc, ["--noEmit", "--strict", "--target", "es2022", "--module", "es2022", "--moduleResolution", "bundler", "--skipLibCheck", "false", "--lib", "es2022,dom", file], {
    cwd: app.dir,
    stdio: "inherit",
  });
});

test("after each change the handle's document, the draft and the engine's value agree", async () => {
  const installed = await serveDir(join(app.dir, "node_modules/nexus-sync"));
  scene.defer(() => installed.close());
  const { page, log } = await scene.profile(`${installed.url}package.json`, { ready: "true" });
  const rounds = await page.evaluate(async () => {
    const { Nexus, text, counter, splice, increment } = await import("/dist/index.js");
    const nexus = await Nexus.open({ name: "agree" });
    const vault = await nexus.createVault("Checks");
    const handle = await vault.create({ title: "t", items: ["a", "b", "c"], body: text("hello"), n: counter(1), meta: {} });
    const events = [];
    handle.on("change", ({ patches, local }) => events.push({ patches: patches.length, local }));
    const steps = [
      (d) => { d.title = "u"; d.items.push("d", { k: [1, 2] }); },
      (d) => { d.items.splice(1, 2, "x"); delete d.meta; d.extra = { deep: { list: [true, null, 2.5] } }; },
      (d) => { splice(d, "body", 5, 0, ", wörld 🌍"); increment(d, "n", 41); },
      (d) => { d.items[3].k.unshift(0); d.items.shift(); d.extra.deep.list.pop(); },
      (d) => { splice(d, "body", 0, 5, "HELLO"); d.items.deleteAt(0); d.items.insertAt(1, "y", "z"); },
      (d) => { d.todos = [{ id: 1, t: "a" }, { id: 2, t: "b" }, { id: 3, t: "c" }]; },
      // The item found is the item deleted (a new proxy per read once made this -1: the last).
      (d) => { d.todos.splice(d.todos.indexOf(d.todos.find((t) => t.id === 2)), 1); },
      (d) => { const c = d.todos.find((t) => t.id === 3); d.todos.unshift({ id: 0, t: "z" }); c.t = "C"; d.todos.reverse(); },
      // Text inside a literal is collaborative text: it takes splices.
      (d) => { d.card = { note: text("ab"), hits: counter(1) }; },
      (d) => { splice(d.card, "note", 1, 0, "-"); increment(d.card, "hits", 2); },
      // UTF-16 positions, as a DOM selection gives them: the end is after the emoji's two units.
      (d) => { splice(d, "body", d.body.length, 0, "!"); splice(d, "body", d.body.indexOf("🌍"), 2, "🌎"); },
      // A string assigned over text edits the text.
      (d) => { d.card.note = "a-b-c"; },
    ];
    const out = [];
    for (const step of steps) {
      let draft;
      await handle.change((d) => { step(d); draft = JSON.parse(JSON.stringify(d)); });
      out.push({ handle: handle.doc(), draft, engine: await nexus.engine.read(vault.id, handle.id) });
    }
    // Without a listener the handle takes the draft as the new value instead of asking
    // for patches: the same steps must end the same.
    const quiet = await vault.create({ title: "t", items: ["a", "b", "c"], body: text("hello"), n: counter(1), meta: {} });
    for (const step of steps) {
      let draft;
      await quiet.change((d) => { step(d); draft = JSON.parse(JSON.stringify(d)); });
      out.push({ handle: quiet.doc(), draft, engine: await nexus.engine.read(vault.id, quiet.id) });
    }
    return { out, events };
  });
  for (const [i, { handle, draft, engine }] of rounds.out.entries()) {
    assert.deepEqual(handle, engine, `step ${i}: handle vs engine\n${log.join("\n")}`);
    assert.deepEqual(draft, engine, `step ${i}: draft vs engine`);
  }
  assert.equal(rounds.out.length, 24);
  assert.deepEqual(rounds.out.at(-1).engine.card, { note: "a-b-c", hits: 3 });
  assert.equal(rounds.out.at(-1).engine.body, "HELLO, wörld 🌎!");
  assert.equal(rounds.out.at(-1).engine.n, 42);
  assert.deepEqual(rounds.out[6].engine.todos.map((t) => t.id), [1, 3], "the found item was deleted");
  assert.deepEqual(rounds.out.at(-1).engine.todos, [{ id: 3, t: "C" }, { id: 1, t: "a" }, { id: 0, t: "z" }]);
  assert.equal(rounds.events.length, 12);
  assert.ok(rounds.events.every((e) => e.local && e.patches > 0));
});

test("a change shows at once, resolves durable with heads, lands where it was recorded, and a refused one is taken back", async () => {
  const installed = await serveDir(join(app.dir, "node_modules/nexus-sync"));
  scene.defer(() => installed.close());
  const { page, log } = await scene.profile(`${installed.url}package.json`, { ready: "true" });
  const seen = await page.evaluate(async () => {
    const { Nexus } = await import("/dist/index.js");
    const nexus = await Nexus.open({ name: "optimistic" });
    const vault = await nexus.createVault("Optimistic");
    const handle = await vault.create({ list: ["a", "b"] });
    const events = [];
    handle.on("change", ({ doc, local }) => events.push({ list: doc.list, deep: doc.deep !== undefined, local }));
    // Shown in the same task, before any await, event included.
    const first = handle.change((d) => { d.list.push("c"); }, { message: "add c" });
    const sameTask = { doc: handle.doc().list, events: events.length };
    const second = handle.change((d) => { d.list.push("d"); });
    const both = handle.doc().list;
    const heads = await first;
    await second;
    const durable = { heads, handleHeads: handle.heads(), engine: (await nexus.engine.read(vault.id, handle.id)).list };
    // Another writer (the engine directly, as a tab or peer would) puts "x" first; the
    // handle has not taken it in when its next change deletes "b" by index.
    await nexus.engine.change(vault.id, handle.id, [{ op: "insert", path: ["list", 0], value: "x" }], null, null);
    const deleting = handle.change((d) => { d.list.splice(d.list.indexOf("b"), 1); });
    await deleting;
    await new Promise((r) => setTimeout(r, 200));
    const merged = { handle: handle.doc().list, engine: (await nexus.engine.read(vault.id, handle.id)).list };
    // Too deep for the engine: shown at first, then taken back when the engine refuses it.
    events.length = 0;
    let refused;
    const tooDeep = handle.change((d) => {
      const deep = {};
      let node = deep;
      for (let i = 0; i < 300; i++) node = node.next = {};
      d.deep = deep;
    });
    const shown = handle.doc().deep !== undefined;
    await tooDeep.catch((e) => (refused = e.code ?? e.message));
    return { sameTask, both, durable, merged, shown, refused, back: handle.doc().deep === undefined, events };
  });
  assert.deepEqual(seen.sameTask, { doc: ["a", "b", "c"], events: 1 }, log.join("\n"));
  assert.deepEqual(seen.both, ["a", "b", "c", "d"]);
  assert.ok(seen.durable.heads.length > 0);
  assert.deepEqual(seen.durable.engine, ["a", "b", "c", "d"]);
  assert.deepEqual(seen.merged.engine, ["x", "a", "c", "d"], "the item recorded as b was deleted, not the one at its index now");
  assert.deepEqual(seen.merged.handle, seen.merged.engine);
  assert.ok(seen.shown, "the refused change showed at first");
  assert.ok(seen.refused, "its promise rejected");
  assert.ok(seen.back, "and it was taken back");
  assert.deepEqual(seen.events.map((e) => [e.deep, e.local]), [[true, true], [false, false]]);
});

test("find waits for a document that is not here yet, gives up as unavailable, and the handle becomes ready when it arrives", async () => {
  const desktop = scene.desktopWithVault();
  let daemon = await scene.serve(desktop.home, "/ip4/127.0.0.1/tcp/0/ws");
  const address = daemon.addresses[0].replace(/\/p2p\/.*$/, "");
  const code = nexus(desktop.home, "invite", "create", "--vault", "Family", "--expires", "10m");
  const installed = await serveDir(join(app.dir, "node_modules/nexus-sync"));
  scene.defer(() => installed.close());
  const { page, log } = await scene.profile(`${installed.url}package.json`, { ready: "true" });
  await page.evaluate(async (code) => {
    const { Nexus } = await import("/dist/index.js");
    window.nexus = await Nexus.open({ name: "later" });
    window.vault = await window.nexus.join(code);
  }, code).catch((e) => assert.fail(`${e.message}\n${log.join("\n")}`));
  // Documents made on the desktop while its daemon is down: the browser cannot have them.
  await daemon.stop();
  const later = nexus(desktop.home, "doc", "create", "--vault", "Family");
  nexus(desktop.home, "doc", "put", "--vault", "Family", later, "title", '"Later"');
  const other = nexus(desktop.home, "doc", "create", "--vault", "Family");
  const before = await page.evaluate(async ({ later, other }) => {
    const gaveUp = await window.vault.find(later, { timeoutMs: 300 }).then(() => "found", (e) => e.code);
    const stateAfter = window.vault.handle(later).state;
    const controller = new AbortController();
    const aborted = window.vault.find(other, { signal: controller.signal }).then(() => "found", (e) => e.code);
    controller.abort();
    // A find that waits long enough, started before the document can arrive.
    window.waiting = window.vault.find(later, { timeoutMs: 60_000 }).then((h) => h.doc().title);
    return { gaveUp, stateAfter, aborted: await aborted, waitingState: window.vault.handle(later).state };
  }, { later, other });
  assert.deepEqual(before, { gaveUp: "UNAVAILABLE", stateAfter: "unavailable", aborted: "ABORTED", waitingState: "requesting" });
  daemon = await scene.serve(desktop.home, address);
  const after = await page.evaluate(async () => ({ title: await window.waiting }))
    .catch((e) => assert.fail(`${e.message}\n${log.join("\n")}`));
  assert.equal(after.title, "Later", "the waiting find resolved when the document arrived");
  const state = await page.evaluate((id) => window.vault.handle(id).state, later);
  assert.equal(state, "ready");
});

test("every error the package gives is a NexusError with a documented code", async () => {
  // A desktop that never serves: its invite names an inviter no one can reach.
  const desktop = scene.desktopWithVault();
  const code = nexus(desktop.home, "invite", "create", "--vault", "Family", "--expires", "10m");
  const desktopId = nexus(desktop.home, "id");
  const installed = await serveDir(join(app.dir, "node_modules/nexus-sync"));
  scene.defer(() => installed.close());
  const { page, log } = await scene.profile(`${installed.url}package.json`, { ready: "true" });
  const results = await page.evaluate(async ({ code, desktopId, missingDoc }) => {
    const { Nexus, NexusError } = await import("/dist/index.js");
    const nexus = await Nexus.open({ name: "errors" });
    const out = [];
    const attempt = async (what, run) => {
      try {
        await run();
        out.push([what, "no error"]);
      } catch (e) {
        out.push([what, e instanceof NexusError, e.code]);
      }
    };
    await attempt("vault not held", () => nexus.vault("11111111111111111111111111111111"));
    await attempt("unreadable invite", () => nexus.join("nexus1garbage"));
    await attempt("unreadable address", () => nexus.connect("not an address"));
    await attempt("join past its timeout", () => nexus.join(code, { timeoutMs: 300 }));
    const controller = new AbortController();
    const connecting = attempt("connect aborted", () =>
      nexus.connect(`/ip4/127.0.0.1/tcp/9/ws/p2p/${desktopId}`, { signal: controller.signal }),
    );
    controller.abort();
    await connecting;
    const vault = await nexus.createVault("Errors");
    await attempt("unreadable device id", () => vault.approve("not-a-device"));
    const handle = await vault.create({ n: 1 });
    await attempt("nothing storable", () => handle.change((d) => { d.when = new Date(); }));
    await attempt("not offered", () => nexus.acceptOffer(vault.id));
    await attempt("change of a document not here", () => vault.handle(missingDoc).change((d) => { d.x = 1; }));
    await nexus.close();
    await attempt("closed", () => nexus.vaults());
    return out;
  }, { code, desktopId, missingDoc: desktop.doc });
  assert.deepEqual(
    results,
    [
      ["vault not held", true, "UNKNOWN_VAULT"],
      ["unreadable invite", true, "BAD_ARGUMENT"],
      ["unreadable address", true, "BAD_ARGUMENT"],
      ["join past its timeout", true, "JOIN"],
      ["connect aborted", true, "ABORTED"],
      ["unreadable device id", true, "BAD_ARGUMENT"],
      ["nothing storable", true, "BAD_CHANGE"],
      ["not offered", true, "NOT_OFFERED"],
      ["change of a document not here", true, "NOT_READY"],
      ["closed", true, "CLOSED"],
    ],
    log.join("\n"),
  );
});

test("a document exported from the browser loads in @automerge/automerge with the same value and history", async () => {
  const Automerge = await import("@automerge/automerge");
  const installed = await serveDir(join(app.dir, "node_modules/nexus-sync"));
  scene.defer(() => installed.close());
  const { page, log } = await scene.profile(`${installed.url}package.json`, { ready: "true" });
  const exported = await page.evaluate(async () => {
    const { Nexus, text, splice } = await import("/dist/index.js");
    const nexus = await Nexus.open({ name: "export" });
    const vault = await nexus.createVault("Export");
    const handle = await vault.create({ title: "t", items: ["a"], body: text("héllo") });
    await handle.change((d) => { d.items.push({ k: 1 }); splice(d, "body", 5, 0, " 🌍"); });
    const bytes = await handle.export();
    return { bytes: Array.from(bytes), doc: handle.doc(), isBytes: bytes instanceof Uint8Array };
  }).catch((e) => assert.fail(`${e.message}\n${log.join("\n")}`));
  assert.ok(exported.isBytes, "a Uint8Array");
  const loaded = Automerge.load(Uint8Array.from(exported.bytes));
  assert.deepEqual(JSON.parse(JSON.stringify(loaded)), exported.doc);
  assert.equal(Automerge.getAllChanges(loaded).length, 2, "both changes, signed or not, are Automerge's");
});

test("vault objects are live and cached: membership, role and revoked events as the desktop approves and revokes", async () => {
  const desktop = scene.desktopWithVault();
  await scene.serve(desktop.home, "/ip4/127.0.0.1/tcp/0/ws");
  const code = nexus(desktop.home, "invite", "create", "--vault", "Family", "--expires", "10m");
  const installed = await serveDir(join(app.dir, "node_modules/nexus-sync"));
  scene.defer(() => installed.close());
  const { page, log } = await scene.profile(`${installed.url}package.json`, { ready: "true" });
  const joined = await page.evaluate(async (code) => {
    const { Nexus } = await import("/dist/index.js");
    window.nexus = await Nexus.open({ name: "live" });
    window.vault = await window.nexus.join(code);
    window.vaultEvents = [];
    for (const type of ["membership", "role", "revoked"]) {
      window.vault.on(type, (e) => window.vaultEvents.push([type, e.role, e.members]));
    }
    const again = await window.nexus.vault(window.vault.id);
    return { same: again === window.vault, role: window.vault.role, members: window.vault.members, deviceId: window.nexus.deviceId };
  }, code).catch((e) => assert.fail(`${e.message}\n${log.join("\n")}`));
  assert.deepEqual({ same: joined.same, role: joined.role, members: joined.members }, { same: true, role: "member", members: 2 });
  // The desktop approves a third device: a membership event, the count goes up.
  const other = tempHome();
  scene.defer(other.remove);
  const otherId = JSON.parse(nexus(other.dir, "--json", "init")).device_id;
  nexus(desktop.home, "devices", "approve", "--vault", "Family", otherId);
  await eventually("the membership event", () =>
    page.evaluate(() => window.vaultEvents.some(([type, , members]) => type === "membership" && members === 3)),
  ).catch((e) => assert.fail(`${e.message}\n${log.join("\n")}`));
  // The desktop revokes the browser: its role goes to null, with role and revoked events.
  nexus(desktop.home, "devices", "revoke", "--vault", "Family", joined.deviceId);
  await eventually("the revoked event", () => page.evaluate(() => window.vaultEvents.some(([type]) => type === "revoked")), 60_000)
    .catch((e) => assert.fail(`${e.message}\n${log.join("\n")}`));
  const after = await page.evaluate(() => ({ role: window.vault.role, events: window.vaultEvents.filter(([t]) => t !== "membership") }));
  assert.equal(after.role, null);
  assert.deepEqual(after.events, [["role", null, after.events[0][2]], ["revoked", null, after.events[0][2]]]);
});

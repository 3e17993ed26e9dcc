// Tabs of one browser profile are one device: one leader tab holds the connections,
// changes travel between tabs over BroadcastChannel, and when the leader closes another
// tab takes over. Also: a reload in the middle of writing loses nothing that resolved.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import {
  Scene,
  changeDoc,
  docGet,
  eventually,
  nexus,
  openNexus,
  readDoc,
} from "./harness.mjs";

const scene = new Scene();
before(() => scene.start());
after(() => scene.close());

async function setOffline(context, page, offline) {
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  await cdp.send("Network.emulateNetworkConditions", {
    offline,
    latency: 0,
    downloadThroughput: -1,
    uploadThroughput: -1,
  });
}

const status = (page) => page.evaluate(() => window.n.status());

test("two tabs see each other's edits without the network, and the connection moves when the leader closes", async () => {
  const desktop = scene.desktopWithVault();
  await scene.serve(desktop.home, "/ip4/127.0.0.1/tcp/0/ws");
  const code = nexus(desktop.home, "invite", "create", "--vault", "Family", "--expires", "10m");
  const { context, page: first, log } = await scene.profile();
  const device = await openNexus(first);
  await eventually("the first tab to lead", async () => (await status(first)).leader);
  const { vault, doc } = { vault: await first.evaluate((c) => window.n.join(c), code), doc: desktop.doc };

  // The second tab is offline: whatever it sees comes from the first tab.
  const second = await context.newPage();
  second.on("console", (m) => log.push(`second: ${m.text()}`));
  await second.goto(scene.server.url);
  await second.waitForFunction(() => window.nexusReady === true);
  await setOffline(context, second, true);
  assert.equal(await openNexus(second), device, "both tabs are the same device");
  const secondStatus = await status(second);
  assert.equal(secondStatus.leader, false);
  assert.equal(secondStatus.online, false);
  await eventually("the vault in the second tab", async () => (await readDoc(second, vault, doc)).title === "Shopping");

  await changeDoc(second, vault, doc, [{ op: "put", path: ["fromSecondTab"], value: 1 }]);
  await eventually("the second tab's edit in the first", async () => (await readDoc(first, vault, doc)).fromSecondTab === 1)
    .catch((e) => assert.fail(`${e.message}\n${log.join("\n")}`));
  await eventually("the second tab's edit on the desktop, through the leader", () => docGet(desktop.home, doc).fromSecondTab === 1);
  await changeDoc(first, vault, doc, [{ op: "put", path: ["fromFirstTab"], value: 1 }]);
  await eventually("the first tab's edit in the second", async () => (await readDoc(second, vault, doc)).fromFirstTab === 1);
  nexus(desktop.home, "doc", "put", "--vault", "Family", doc, "fromDesktop", "1");
  await eventually("the desktop's edit in the offline tab", async () => (await readDoc(second, vault, doc)).fromDesktop === 1);

  // The leader closes: the second tab takes over, and reconnects once it is online.
  await first.close();
  await eventually("the second tab to lead", async () => (await status(second)).leader)
    .catch((e) => assert.fail(`${e.message}\n${log.join("\n")}`));
  await setOffline(context, second, false);
  await eventually("the second tab connected to the desktop", async () =>
    (await status(second)).peers.some((p) => p.connected),
  ).catch((e) => assert.fail(`${e.message}\n${log.join("\n")}`));
  nexus(desktop.home, "doc", "put", "--vault", "Family", doc, "afterHandover", "2");
  await eventually("the desktop's edit in the new leader", async () => (await readDoc(second, vault, doc)).afterHandover === 2);
  await changeDoc(second, vault, doc, [{ op: "put", path: ["fromNewLeader"], value: 2 }]);
  await eventually("the new leader's edit on the desktop", () => docGet(desktop.home, doc).fromNewLeader === 2);
});

test("after a reload in the middle of writing, every change whose promise resolved is there", async () => {
  const { page } = await scene.profile();
  await openNexus(page);
  const { vault, doc } = await page.evaluate(async () => {
    const vault = await window.n.createVault("Reload");
    const doc = await window.n.createDocument(vault, {});
    localStorage.setItem("resolved", "-1");
    // Write until the page goes away; remember the last write that resolved.
    (async () => {
      for (let i = 0; ; i++) {
        await window.n.change(vault, doc, [{ op: "put", path: [`k${i}`], value: i }]);
        localStorage.setItem("resolved", String(i));
      }
    })();
    return { vault, doc };
  });
  await eventually("some writes to resolve", () => page.evaluate(() => Number(localStorage.getItem("resolved")) >= 20));
  await page.reload();
  await page.waitForFunction(() => window.nexusReady === true);
  const resolved = await page.evaluate(() => Number(localStorage.getItem("resolved")));
  await openNexus(page);
  const content = await readDoc(page, vault, doc);
  const missing = [];
  for (let i = 0; i <= resolved; i++) if (content[`k${i}`] !== i) missing.push(i);
  assert.deepEqual(missing, [], `all ${resolved + 1} resolved writes survive the reload`);
  console.log(`# ${resolved + 1} writes had resolved before the reload; ${Object.keys(content).length} are stored`);
});

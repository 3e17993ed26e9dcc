// The page stays usable while a fresh device syncs a big document: a browser approved
// by its DeviceId receives a 10,000-change document from `nexus serve`, and the longest
// main-thread task during the sync (PerformanceObserver "longtask") is reported. Timing
// is measured, not asserted: the figures go to docs/benchmarks.md.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { Scene, bin, eventually, openNexus, readDoc, tempHome } from "./harness.mjs";

const CHANGES = Number(process.env.NEXUS_BIG_DOC_CHANGES ?? 10_000);
const scene = new Scene();
before(() => scene.start());
after(() => scene.close());

test(`a fresh browser device syncs a ${CHANGES}-change document`, async () => {
  const { page, log } = await scene.profile();
  const device = await openNexus(page);
  const home = tempHome();
  scene.defer(home.remove);
  const [vault, doc] = execFileSync(join(bin, "examples", "big_document"), [home.dir, String(CHANGES), device], {
    encoding: "utf8",
  })
    .trim()
    .split(" ");
  const daemon = await scene.serve(home.dir, "/ip4/127.0.0.1/tcp/0/ws");

  await page.evaluate(() => {
    window.longTasks = [];
  });
  const started = Date.now();
  await page.evaluate((a) => window.n.connect(a), daemon.addresses[0]);
  // Each change set k<i % 100> to i: the last hundred values are the last hundred changes.
  const last = CHANGES - 1;
  await eventually(
    "the whole document in the browser",
    async () => (await readDoc(page, vault, doc).catch(() => ({})))[`k${last % 100}`] === last,
    120_000,
  ).catch((e) => assert.fail(`${e.message}\n${log.slice(-20).join("\n")}`));
  const elapsed = Date.now() - started;
  const tasks = await page.evaluate(() => window.longTasks);
  const longest = Math.max(0, ...tasks);
  console.log(
    `# ${CHANGES} changes synced in ${elapsed} ms; ${tasks.length} long tasks, longest ${Math.round(longest)} ms, ` +
      `total ${Math.round(tasks.reduce((a, b) => a + b, 0))} ms`,
  );
  const content = await readDoc(page, vault, doc);
  assert.equal(Object.keys(content).length, 100);
});

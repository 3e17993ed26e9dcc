#!/usr/bin/env node
// Summarizes a Chromium .cpuprofile (from NEXUS_CPU_PROFILE in bench/browser/run.mjs):
// self time per function, largest first, and the share of the whole.
//
//   node bench/browser/profile-summary.mjs <file.cpuprofile> [top=30]
import { readFileSync } from "node:fs";

const [file, topArg] = process.argv.slice(2);
if (!file) {
  console.error("usage: profile-summary.mjs <file.cpuprofile> [top]");
  process.exit(2);
}
const profile = JSON.parse(readFileSync(file, "utf8"));
const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
// Each sample is charged the time until the next one.
const selfMs = new Map();
for (let i = 0; i < profile.samples.length; i++) {
  const delta = (profile.timeDeltas[i + 1] ?? 0) / 1000;
  selfMs.set(profile.samples[i], (selfMs.get(profile.samples[i]) ?? 0) + delta);
}
const byFunction = new Map();
let total = 0;
for (const [id, ms] of selfMs) {
  const frame = nodes.get(id)?.callFrame;
  const name = frame ? `${frame.functionName || "(anonymous)"}  ${frame.url.split("/").at(-1)}` : "?";
  byFunction.set(name, (byFunction.get(name) ?? 0) + ms);
  total += ms;
}
const top = [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, Number(topArg ?? 30));
console.log(`total ${total.toFixed(1)} ms sampled`);
for (const [name, ms] of top) {
  console.log(`${ms.toFixed(1).padStart(8)} ms ${((100 * ms) / total).toFixed(1).padStart(5)} %  ${name}`);
}

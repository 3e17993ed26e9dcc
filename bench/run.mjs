// Runs every side-by-side workload (Nexus, @automerge/automerge-repo, Yjs) on this
// machine in one go, prints one table, and rewrites the "Side by side" section of
// docs/benchmarks.md (between its markers) with the figures, the machine, the versions
// and bar charts (docs/bench/*.svg). `scripts/bench` builds what this needs first.
//
//   node bench/run.mjs [--quick]     --quick: smaller sizes, for trying the harness
import { execFileSync } from "node:child_process";
import { cpus, totalmem } from "node:os";
import { mkdirSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const quick = process.argv.includes("--quick");
const SIZE = quick ? 1_000 : 10_000;
const PEERS = quick ? 20 : 100;
const results = join(root, "bench/results");
mkdirSync(results, { recursive: true });

function log(message) {
  process.stderr.write(`\n== ${message}\n`);
}

/** Runs a command, returns its stdout; stderr passes through. */
function run(command, args, env = {}) {
  return execFileSync(command, args, {
    cwd: root,
    env: { ...process.env, ...env },
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
    maxBuffer: 64 << 20,
    timeout: 15 * 60_000,
  });
}

const lastJson = (out) => JSON.parse(out.trim().split("\n").filter((l) => l.startsWith("{")).at(-1));
const jsonLines = (out) => out.trim().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));

/** Each figure: a number, or { unsupported } / { error }, with an optional note. */
const rows = [];
function row(id, name, unit, figures, better = "lower") {
  rows.push({ id, name, unit, better, ...figures });
}

function attempt(what, work) {
  try {
    return work();
  } catch (e) {
    process.stderr.write(`${what} failed: ${e.message}\n`);
    return { error: `${what} failed: ${String(e.message).split("\n")[0]}` };
  }
}

// 1. Initial sync, native to native.
log(`1. initial sync of a ${SIZE}-change document, native to native`);
const nexusSync = attempt("nexus loopback bench", () =>
  jsonLines(run("cargo", ["bench", "-q", "-p", "nexus", "--bench", "loopback"], { NEXUS_BENCH_CHANGES: String(SIZE), NEXUS_BENCH_JSON: "1" })),
);
const tcp = Array.isArray(nexusSync) ? nexusSync.find((r) => r.transport === "TCP" && r.snapshots) : nexusSync;
const altSync = attempt("alternatives' initial sync", () => lastJson(run("node", ["bench/node/initial-sync.mjs", String(SIZE)])));
const pick = (obj, key, field) => (obj?.error ? obj : obj?.[key]?.[field] !== undefined ? { value: obj[key][field], note: obj[key].note } : { error: "missing" });
row("1", `initial sync, ${SIZE} changes, native ↔ native: time`, "ms", {
  nexus: tcp?.error ? tcp : { value: tcp.ms, note: "two `NativeEngine`s, TCP + Noise + Yamux, SQLite on both sides, document as one signed snapshot; every signature verified" },
  automergeRepo: pick(altSync, "automergeRepo", "ms"),
  yjs: pick(altSync, "yjs", "ms"),
});
row("1", `initial sync, ${SIZE} changes, native ↔ native: bytes on loopback`, "bytes", {
  nexus: tcp?.error ? tcp : { value: tcp.bytes },
  automergeRepo: pick(altSync, "automergeRepo", "bytes"),
  yjs: pick(altSync, "yjs", "bytes"),
});

// 2 and 3. Reconnect with many documents.
log(`2, 3. reconnect of two devices holding ${SIZE} documents`);
const nexusReconnect = attempt("nexus reconnect example", () =>
  lastJson(run("cargo", ["run", "-q", "--release", "-p", "nexus-core", "--example", "reconnect", "--", String(SIZE)])),
);
const altReconnect = attempt("alternatives' reconnect", () => lastJson(run("node", ["bench/node/reconnect.mjs", String(SIZE), String(Math.min(SIZE, 2_000))])));
for (const [key, id, label] of [["reconnectInSync", "2", "reconnect, in sync"], ["reconnectOneChanged", "3", "reconnect, one document changed"]]) {
  for (const [field, unit] of [["bytes", "bytes"], ["roundTrips", "round trips"], ["ms", "ms"]]) {
    // A figure measured with fewer documents is shown with its size, without a ratio.
    const fig = (obj, k) => {
      if (obj?.error) return obj;
      const r = obj?.[k]?.[key];
      if (!r) return { error: "missing" };
      const docs = obj[k].docs ?? SIZE;
      const value = docs === SIZE ? r[field] : `${Math.round(r[field]).toLocaleString("en")} at ${docs.toLocaleString("en")} docs`;
      return { value, note: obj[k].note };
    };
    row(id, `${label}, ${SIZE} documents: ${unit}`, unit, {
      nexus: nexusReconnect?.error ? nexusReconnect : { value: nexusReconnect[key][field] },
      automergeRepo: fig(altReconnect, "automergeRepo"),
      yjs: fig(altReconnect, "yjs"),
    });
  }
}

// 7. Server memory with many peers.
log(`7. relay / sync server memory with ${PEERS} peers`);
const relay = attempt("relay memory bench", () =>
  lastJson(run("cargo", ["bench", "-q", "-p", "nexus-relay", "--bench", "through_relay"], { NEXUS_BENCH_MEMORY_ONLY: "1", NEXUS_BENCH_PEERS: String(PEERS) })),
);
const servers = attempt("alternatives' server memory", () => lastJson(run("node", ["bench/node/server-memory.mjs", String(PEERS)])));
const mib = (kib) => Math.round((kib / 1024) * 10) / 10;
const mem = (obj) => (obj?.error ? obj : { value: mib(obj.withPeersKiB), note: `${mib(obj.idleKiB)} MiB idle${obj.note ? `; ${obj.note}` : ""}` });
row("7", `relay / sync server resident memory, ${PEERS} peers connected`, "MiB", {
  nexus: relay?.error ? relay : { value: mib(relay.withPeersKiB), note: `${mib(relay.idleKiB)} MiB idle; \`nexus-relay\` with a reservation per peer; forwards ciphertext, holds no document` },
  automergeRepo: servers?.error ? servers : mem(servers.automergeRepo),
  yjs: servers?.error ? servers : mem(servers.yjs),
});

// 1b, 4, 5, 6, 8: in Chromium.
log("1b, 4, 5, 6, 8: in Chromium");
const browserOut = join(results, "browser.json");
const browser = attempt("browser workloads", () => {
  run("node", ["bench/browser/run.mjs", "--out", browserOut, ...(quick ? ["--quick"] : [])]);
  return JSON.parse(readFileSync(browserOut, "utf8"));
});
for (const r of normalizeBrowser(browser)) rows.push(r);

/** The browser harness's workloads as rows (see bench/browser/run.mjs for its shape). */
function normalizeBrowser(b) {
  if (b?.error) return [{ id: "b", name: "browser workloads", unit: "", better: "lower", nexus: b, automergeRepo: b, yjs: b }];
  const out = [];
  for (const w of b.workloads ?? []) {
    for (const metric of w.metrics ?? [w]) {
      const get = (impl) => {
        const r = metric.results?.[impl] ?? metric.results?.[impl === "automergeRepo" ? "automerge-repo" : impl];
        if (r === undefined) return { error: "missing" };
        if (typeof r === "number") return { value: r };
        return r;
      };
      out.push({
        id: String(w.id),
        name: metric.name ?? w.name,
        unit: metric.unit ?? w.unit ?? "",
        better: metric.better ?? w.better ?? "lower",
        nexus: get("nexus"),
        automergeRepo: get("automergeRepo"),
        yjs: get("yjs"),
      });
    }
  }
  return out;
}

// The table.
const fmt = (f) => {
  if (f?.value === undefined || f.value === null) return f?.unsupported ? `n/a: ${f.unsupported}` : f?.pending ? `pending: ${f.pending}` : `error: ${f?.error ?? "missing"}`;
  const v = f.value;
  return typeof v === "number" ? (Number.isInteger(v) ? v.toLocaleString("en") : v.toLocaleString("en", { maximumFractionDigits: v < 10 ? 2 : 1 })) : String(v);
};
const ratio = (a, b) => (a?.value > 0 && b?.value > 0 ? `${(b.value / a.value).toLocaleString("en", { maximumFractionDigits: 2 })}×` : "–");
const header = "| # | workload | unit | Nexus | automerge-repo | ratio | Yjs | ratio |\n|---|---|---|---|---|---|---|---|";
const lines = rows.map((r) => `| ${r.id} | ${r.name} | ${r.unit} | ${fmt(r.nexus)} | ${fmt(r.automergeRepo)} | ${ratio(r.nexus, r.automergeRepo)} | ${fmt(r.yjs)} | ${ratio(r.nexus, r.yjs)} |`);
const table = [header, ...lines].join("\n");
console.log(table);
writeFileSync(join(results, "all.json"), JSON.stringify({ rows, browser, date: new Date().toISOString() }, null, 2));

// Notes, one per figure that has one.
const notes = [];
for (const r of rows) {
  for (const [impl, label] of [["nexus", "Nexus"], ["automergeRepo", "automerge-repo"], ["yjs", "Yjs"]]) {
    const note = r[impl]?.note ?? r[impl]?.unsupported;
    const line = `- ${r.id} ${label}: ${note}`;
    if (note && !notes.includes(line)) notes.push(line);
  }
}

// Charts: one SVG per row with numbers for at least two implementations.
const chartDir = join(root, "docs/bench");
mkdirSync(chartDir, { recursive: true });
const charts = [];
rows.forEach((r, i) => {
  const bars = [["Nexus", r.nexus], ["automerge-repo", r.automergeRepo], ["Yjs", r.yjs]].filter(([, f]) => typeof f?.value === "number");
  if (bars.length < 2 || !["ms", "bytes", "MiB", "round trips", "KiB"].includes(r.unit)) return;
  const max = Math.max(...bars.map(([, f]) => f.value), 1e-9);
  const width = 560;
  const barArea = 330;
  const svgRows = bars
    .map(([label, f], k) => {
      const w = Math.max(1, (f.value / max) * barArea);
      const y = 34 + k * 30;
      const colour = label === "Nexus" ? "#4338ca" : label === "Yjs" ? "#0f766e" : "#b45309";
      return `<text x="10" y="${y + 15}" font-size="13">${label}</text><rect x="120" y="${y}" width="${w.toFixed(1)}" height="20" fill="${colour}"/><text x="${(126 + w).toFixed(1)}" y="${y + 15}" font-size="12">${fmt(f)} ${r.unit}</text>`;
    })
    .join("");
  const file = `w${r.id}-${i}.svg`;
  const title = r.name.replace(/&/g, "&amp;").replace(/</g, "&lt;");
  writeFileSync(
    join(chartDir, file),
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${44 + bars.length * 30}" font-family="system-ui, sans-serif"><rect width="100%" height="100%" fill="white"/><text x="10" y="20" font-size="13" font-weight="600">${title} (${r.better} is better)</text>${svgRows}</svg>\n`,
  );
  charts.push(`![${title}](bench/${file})`);
});

// Machine and versions.
const version = (pkg) => {
  for (const dir of ["bench/node_modules", "npm/node_modules"]) {
    const file = join(root, dir, pkg, "package.json");
    if (existsSync(file)) return JSON.parse(readFileSync(file, "utf8")).version;
  }
  return "?";
};
const rustc = attempt("rustc", () => run("rustc", ["--version"]).trim());
const machine = `${cpus()[0]?.model ?? "CPU"}, ${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB; ${typeof rustc === "string" ? rustc : "rustc ?"}; Node ${process.version}; ${browser?.chromium ?? browser?.versions?.chromium ?? "Chromium (see browser.json)"}`;
const versions = ["@automerge/automerge-repo", "@automerge/automerge", "yjs", "y-websocket", "y-indexeddb", "@y/websocket-server", "nexus-sync"]
  .map((p) => `${p} ${version(p)}`)
  .join(", ");

const section = `<!-- side-by-side:start (generated by bench/run.mjs; do not edit by hand) -->
## Side by side with automerge-repo and Yjs

\`scripts/bench\` (${new Date().toISOString().slice(0, 10)}${quick ? ", --quick sizes" : ""}). Machine: ${machine}.
Versions: ${versions}. Ratios are the alternative's figure over Nexus's (above 1×: Nexus
is smaller or faster where lower is better).

${table}

Notes:

${notes.join("\n")}

${charts.join("\n")}
<!-- side-by-side:end -->`;

const docPath = join(root, "docs/benchmarks.md");
const doc = readFileSync(docPath, "utf8");
const start = doc.indexOf("<!-- side-by-side:start");
const end = doc.indexOf("<!-- side-by-side:end -->");
const updated = start >= 0 && end > start ? doc.slice(0, start) + section + doc.slice(end + "<!-- side-by-side:end -->".length) : `${doc.trimEnd()}\n\n${section}\n`;
writeFileSync(docPath, updated);
log(`wrote docs/benchmarks.md and ${charts.length} charts in docs/bench/`);

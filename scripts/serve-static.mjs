// Serves a built web app (a directory) on 127.0.0.1 for the demo: no dependencies,
// index.html for paths without a file (a single-page app), no caching so a rebuilt app
// is picked up (the app's service worker does the offline caching).
//
//   node scripts/serve-static.mjs DIR [PORT]    prints "Serving DIR on http://127.0.0.1:PORT/"
import { createServer } from "node:http";
import { existsSync, readFileSync, statSync } from "node:fs";
import { extname, join, normalize, resolve } from "node:path";

const [dir, port = "0"] = process.argv.slice(2);
if (!dir || !existsSync(join(dir, "index.html"))) {
  console.error(`usage: serve-static.mjs DIR [PORT]; DIR must hold index.html (got ${dir})`);
  process.exit(2);
}
const root = resolve(dir);
const types = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript",
  ".css": "text/css",
  ".json": "application/json",
  ".webmanifest": "application/manifest+json",
  ".png": "image/png",
  ".svg": "image/svg+xml",
  ".wasm": "application/wasm",
};

const server = createServer((req, res) => {
  let path;
  try {
    path = decodeURIComponent(new URL(req.url, "http://x").pathname);
  } catch {
    res.writeHead(400).end("bad path");
    return;
  }
  let file = join(root, normalize(path));
  if (!file.startsWith(root) || !existsSync(file) || !statSync(file).isFile()) file = join(root, "index.html");
  res.writeHead(200, { "content-type": types[extname(file)] ?? "application/octet-stream", "cache-control": "no-cache" });
  res.end(readFileSync(file));
});
server.listen(Number(port), "127.0.0.1", () => {
  console.log(`Serving ${dir} on http://127.0.0.1:${server.address().port}/`);
});

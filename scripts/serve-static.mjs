// Serves a built web app (a directory) on 127.0.0.1 for the demo and the browser tests:
// no dependencies, index.html for paths without a file (a single-page app), no caching
// so a rebuilt app is picked up (the app's service worker does the offline caching).
//
//   node scripts/serve-static.mjs DIR [PORT]    prints "Serving DIR on http://127.0.0.1:PORT/"
import { createServer } from "node:http";
import { existsSync, readFileSync, statSync } from "node:fs";
import { extname, join, normalize, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** Content types of the files a web app ships. */
export const types = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript",
  ".mjs": "text/javascript",
  ".css": "text/css",
  ".json": "application/json",
  ".webmanifest": "application/manifest+json",
  ".png": "image/png",
  ".svg": "image/svg+xml",
  ".wasm": "application/wasm",
};

/** An HTTP server (not listening yet) for the files of `dir`. */
export function staticServer(dir) {
  const root = resolve(dir);
  return createServer((req, res) => {
    let path;
    try {
      path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    } catch {
      res.writeHead(400).end("bad path");
      return;
    }
    let file = join(root, normalize(path));
    if (!file.startsWith(root) || !existsSync(file) || !statSync(file).isFile()) file = join(root, "index.html");
    if (!existsSync(file)) {
      res.writeHead(404).end("not found");
      return;
    }
    res.writeHead(200, { "content-type": types[extname(file)] ?? "application/octet-stream", "cache-control": "no-cache" });
    res.end(readFileSync(file));
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  const [dir, port = "0"] = process.argv.slice(2);
  if (!dir || !existsSync(join(dir, "index.html"))) {
    console.error(`usage: serve-static.mjs DIR [PORT]; DIR must hold index.html (got ${dir})`);
    process.exit(2);
  }
  const server = staticServer(dir);
  server.listen(Number(port), "127.0.0.1", () => {
    console.log(`Serving ${dir} on http://127.0.0.1:${server.address().port}/`);
  });
}

// The service worker of Nexus Notes: keeps the app shell (index.html, the bundled
// JS/CSS with the engine's WebAssembly inlined, the manifest, the icons) in a versioned
// cache so the app starts and works offline after the first visit. CACHE_NAME and
// PRECACHE are prepended at build time (see vite.config.js). Documents are not here:
// they live in IndexedDB, written by the engine.
/* global CACHE_NAME, PRECACHE */

const CACHE_PREFIX = "nexus-notes-";
const scope = self.registration.scope;
const url = (file) => new URL(file, scope).href;
const PRECACHED = new Set(PRECACHE.map(url));
const INDEX = url("index.html");

self.addEventListener("install", (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE_NAME);
      // Straight from the server, not from the HTTP cache: the files of this version.
      await cache.addAll(PRECACHE.map((file) => new Request(url(file), { cache: "reload" })));
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) {
        if (name.startsWith(CACHE_PREFIX) && name !== CACHE_NAME) await caches.delete(name);
      }
      await self.clients.claim();
    })(),
  );
});

/** The cached copy of `key`, else the network's answer to `request`. */
async function cacheFirst(key, request) {
  const cache = await caches.open(CACHE_NAME);
  const cached = await cache.match(key);
  return cached ?? fetch(request);
}

self.addEventListener("fetch", (event) => {
  const { request } = event;
  if (request.method !== "GET") return;
  const target = new URL(request.url);
  if (target.origin !== self.location.origin) return;
  if (request.mode === "navigate") {
    // Any page of the app (with any query, e.g. ?invite=…) is the single page.
    event.respondWith(cacheFirst(INDEX, request));
    return;
  }
  target.search = "";
  target.hash = "";
  if (PRECACHED.has(target.href)) event.respondWith(cacheFirst(target.href, request));
});

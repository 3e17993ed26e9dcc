// Importing the package touches no browser global, so a server-side render (Next.js,
// SvelteKit, Astro) can import it; only Nexus.open needs a browser. Runs on the
// compiled dist/ with Node's test runner, where window, document, indexedDB and
// navigator.locks do not exist.
import { test } from "node:test";
import assert from "node:assert/strict";

test("both entries import where no browser global exists", async () => {
  for (const name of ["window", "document", "indexedDB"]) {
    assert.equal(typeof globalThis[name], "undefined", `${name} is absent here`);
  }
  const full = await import("../dist/index.js");
  const slim = await import("../dist/slim.js");
  for (const entry of [full, slim]) {
    assert.equal(typeof entry.Nexus.open, "function");
    assert.equal(typeof entry.text, "function");
  }
  assert.equal(typeof slim.initializeWasm, "function");
});

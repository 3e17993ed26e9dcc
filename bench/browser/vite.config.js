// The benchmark pages: one page per implementation, so that each page loads only its
// own library (the heap and wasm figures of a page are that library's alone).
import { defineConfig } from "vite";
import { fileURLToPath } from "node:url";

const pages = fileURLToPath(new URL("./pages/", import.meta.url));

export default defineConfig({
  root: pages,
  logLevel: "warn",
  build: {
    outDir: fileURLToPath(new URL("./dist/pages/", import.meta.url)),
    emptyOutDir: true,
    target: "es2022",
    // Keep .wasm files as separate assets (never inlined as data: URLs).
    assetsInlineLimit: 0,
    rollupOptions: {
      input: {
        nexus: `${pages}nexus.html`,
        "automerge-repo": `${pages}automerge-repo.html`,
        yjs: `${pages}yjs.html`,
      },
    },
  },
});

// Two pages: index.html uses the default entry (wasm inlined), slim.html the slim one.
import { defineConfig } from "vite";

export default defineConfig({
  build: {
    target: "es2022",
    rolldownOptions: { input: { main: "index.html", slim: "slim.html" } },
  },
});

/**
 * The default entry: the WebAssembly module is inlined (base64), so it works in Vite,
 * webpack and a plain `<script type="module">` with no plugin or extra file to serve.
 * `nexus-sync/slim` loads the `.wasm` from a URL instead.
 */
import init from "./wasm/nexus_wasm.js";
import wasmBase64 from "./wasm_base64.js";
import { setInitializer } from "./api.js";

setInitializer(async () => {
  const bytes = Uint8Array.from(atob(wasmBase64), (c) => c.charCodeAt(0));
  await init({ module_or_path: bytes });
});

export * from "./exports.js";

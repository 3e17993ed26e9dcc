/**
 * The slim entry: the same API, with the WebAssembly module loaded from a URL (or bytes,
 * or a compiled module) that the app gives to `initializeWasm` before `Nexus.open`.
 * The module ships as `nexus-sync/nexus.wasm`.
 */
import init from "./wasm/nexus_wasm.js";
import { ensureInitialized, setInitializer } from "./api.js";

/** Where the module comes from: a URL, a fetch `Response`, its bytes, or a compiled module. */
export type WasmSource = string | URL | Response | Promise<Response> | BufferSource | WebAssembly.Module;

/** Loads the WebAssembly module; call once before `Nexus.open` (later calls are no-ops). */
export function initializeWasm(source: WasmSource): Promise<void> {
  setInitializer(async () => {
    await init({ module_or_path: source });
  });
  return ensureInitialized();
}

export * from "./exports.js";

/** The WebAssembly module, base64 (written by scripts/build-npm). */
declare const wasmBase64: string;
export default wasmBase64;

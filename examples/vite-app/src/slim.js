// The slim entry: the app serves the .wasm as a file of its own (here Vite's `?url`
// import copies it into the build) and hands its URL to initializeWasm before opening.
import { initializeWasm, Nexus, text, splice } from "nexus-sync/slim";
import wasmUrl from "nexus-sync/nexus.wasm?url";

await initializeWasm(wasmUrl);
const nexus = await Nexus.open({ name: "vite-example-slim" });
const vault = await nexus.createVault("Scratch");
const handle = await vault.create({ note: text("hello") });
await handle.change((d) => splice(d, "note", 5, 0, ", world"));
document.getElementById("out").textContent = handle.doc().note;
window.slimResult = { deviceId: nexus.deviceId, note: handle.doc().note };

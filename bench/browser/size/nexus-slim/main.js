// nexus-sync, slim entry (the .wasm a separate asset): IndexedDB storage, the
// network (WebSocket, WebRTC-direct, relays) and tabs are all in the package.
import { initializeWasm, Nexus } from "nexus-sync/slim";
import wasmUrl from "nexus-sync/nexus.wasm?url";

await initializeWasm(wasmUrl);

const nexus = await Nexus.open({ name: "app" });
const vault = (await nexus.vaults())[0] ?? (await nexus.createVault("app"));
const handle = await vault.create({ items: [] });
handle.on("change", ({ doc }) => (document.getElementById("out").textContent = JSON.stringify(doc)));
await handle.change((d) => d.items.push("milk"));
const relay = new URLSearchParams(location.search).get("relay");
if (relay) await nexus.connect(relay);

// nexus-sync, default entry (WebAssembly inlined as base64): IndexedDB storage, the
// network (WebSocket, WebRTC-direct, relays) and tabs are all in the package.
import { Nexus } from "nexus-sync";

const nexus = await Nexus.open({ name: "app" });
const vault = (await nexus.vaults())[0] ?? (await nexus.createVault("app"));
const handle = await vault.create({ items: [] });
handle.on("change", ({ doc }) => (document.getElementById("out").textContent = JSON.stringify(doc)));
await handle.change((d) => d.items.push("milk"));
const relay = new URLSearchParams(location.search).get("relay");
if (relay) await nexus.connect(relay);

// @automerge/automerge-repo slim entry with the .wasm inlined as base64 (initializeBase64Wasm), IndexedDB storage,
// BroadcastChannel between tabs, WebSocket to a sync server.
import { Repo, initializeBase64Wasm } from "@automerge/automerge-repo/slim";
import { automergeWasmBase64 } from "@automerge/automerge/automerge.wasm.base64";
import { IndexedDBStorageAdapter } from "@automerge/automerge-repo-storage-indexeddb";
import { BroadcastChannelNetworkAdapter } from "@automerge/automerge-repo-network-broadcastchannel";
import { BrowserWebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket";

await initializeBase64Wasm(automergeWasmBase64);
const network = [new BroadcastChannelNetworkAdapter()];
const server = new URLSearchParams(location.search).get("server");
if (server) network.push(new BrowserWebSocketClientAdapter(server));
const repo = new Repo({ storage: new IndexedDBStorageAdapter(), network });
const handle = repo.create({ items: [] });
handle.on("change", ({ doc }) => (document.getElementById("out").textContent = JSON.stringify(doc)));
handle.change((d) => d.items.push("milk"));

// @automerge/automerge-repo slim entry, the .wasm a separate asset (initializeWasm(url)), IndexedDB storage,
// BroadcastChannel between tabs, WebSocket to a sync server.
import { Repo, initializeWasm } from "@automerge/automerge-repo/slim";
import wasmUrl from "@automerge/automerge/automerge.wasm?url";
import { IndexedDBStorageAdapter } from "@automerge/automerge-repo-storage-indexeddb";
import { BroadcastChannelNetworkAdapter } from "@automerge/automerge-repo-network-broadcastchannel";
import { BrowserWebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket";

await initializeWasm(wasmUrl);
const network = [new BroadcastChannelNetworkAdapter()];
const server = new URLSearchParams(location.search).get("server");
if (server) network.push(new BrowserWebSocketClientAdapter(server));
const repo = new Repo({ storage: new IndexedDBStorageAdapter(), network });
const handle = repo.create({ items: [] });
handle.on("change", ({ doc }) => (document.getElementById("out").textContent = JSON.stringify(doc)));
handle.change((d) => d.items.push("milk"));

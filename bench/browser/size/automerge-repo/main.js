// @automerge/automerge-repo as its README sets it up: default entry, IndexedDB storage,
// BroadcastChannel between tabs, WebSocket to a sync server.
import { Repo } from "@automerge/automerge-repo";
import { IndexedDBStorageAdapter } from "@automerge/automerge-repo-storage-indexeddb";
import { BroadcastChannelNetworkAdapter } from "@automerge/automerge-repo-network-broadcastchannel";
import { BrowserWebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket";

const network = [new BroadcastChannelNetworkAdapter()];
const server = new URLSearchParams(location.search).get("server");
if (server) network.push(new BrowserWebSocketClientAdapter(server));
const repo = new Repo({ storage: new IndexedDBStorageAdapter(), network });
const handle = repo.create({ items: [] });
handle.on("change", ({ doc }) => (document.getElementById("out").textContent = JSON.stringify(doc)));
handle.change((d) => d.items.push("milk"));

// Yjs with y-indexeddb (storage) and y-websocket (server and BroadcastChannel between tabs).
import * as Y from "yjs";
import { IndexeddbPersistence } from "y-indexeddb";
import { WebsocketProvider } from "y-websocket";

const doc = new Y.Doc();
const persistence = new IndexeddbPersistence("app", doc);
await persistence.whenSynced;
const server = new URLSearchParams(location.search).get("server") ?? "ws://127.0.0.1:1234";
new WebsocketProvider(server, "app", doc);
const items = doc.getArray("items");
items.observe(() => (document.getElementById("out").textContent = JSON.stringify(items.toJSON())));
items.push(["milk"]);

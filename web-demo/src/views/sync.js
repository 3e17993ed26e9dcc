// The Sync screen: whether the browser is online, whether this tab holds the
// profile's connections (one tab does), the peers with relay/direct marks, where
// this browser can be reached, a field to dial a relay or desktop, and recent events.
import { h, icon, ICONS, copyText, shortId, clock, say } from "../dom.js";

export function syncView(app) {
  const onlineState = h("span", { class: "pill", id: "online-state" });
  const leaderState = h("span", { class: "pill", id: "leader-state" });
  const reachable = h("ul", { class: "address-list", id: "reachable-list" });
  const peers = h("ul", { class: "row-list", id: "peer-list", "aria-label": "Peers" });
  const events = h("ol", { class: "event-list", id: "event-list", "aria-label": "Recent sync events" });
  const address = h("input", {
    class: "input mono",
    id: "connect-address",
    placeholder: "/ip4/192.168.1.7/tcp/4002/ws/p2p/12D3KooW…",
    "aria-label": "Multiaddr of a relay or desktop",
    required: true,
    autocomplete: "off",
    spellcheck: false,
  });
  const connectButton = h("button", { class: "button primary", id: "connect-button", type: "submit" }, "Connect");
  const message = h("p", { class: "inline-message", id: "connect-message", hidden: true });

  const form = h(
    "form",
    {
      class: "inline-form",
      id: "connect-form",
      onsubmit: async (e) => {
        e.preventDefault();
        const value = address.value.trim();
        if (!value) return;
        await app.connect(value);
      },
    },
    address,
    connectButton,
  );

  const root = h(
    "section",
    { class: "screen", id: "screen-sync", "aria-label": "Sync" },
    h("h1", { class: "screen-title" }, "Sync"),
    h(
      "div",
      { class: "grid" },
      h(
        "div",
        { class: "stack" },
        h(
          "div",
          { class: "card" },
          h("h2", {}, "Status"),
          h("div", { class: "pill-row" }, onlineState, leaderState),
          h("h3", {}, "Peers"),
          peers,
        ),
        h(
          "div",
          { class: "card" },
          h("h2", {}, "Connect to a relay or desktop"),
          h("p", { class: "muted small" }, "Paste the address a relay or ", h("code", {}, "nexus serve"), " prints: WebSocket, WebRTC-direct or relay circuit, ending in /p2p/…"),
          form,
          message,
        ),
        h(
          "div",
          { class: "card" },
          h("h2", {}, "Reachable at"),
          h("p", { class: "muted small" }, "Tabs of this browser profile are one device; one tab holds its connections. Other devices reach it at these relay addresses (invites carry them)."),
          reachable,
        ),
      ),
      h("div", { class: "card" }, h("h2", {}, "Recent events"), events),
    ),
  );

  function renderStatus() {
    const s = app.status;
    onlineState.textContent = s.online ? "Online" : "Offline";
    onlineState.dataset.kind = s.online ? "ok" : "warn";
    leaderState.textContent = s.leader ? "This tab holds the connections" : "Another tab holds the connections";
    leaderState.dataset.kind = s.leader ? "info" : "muted";
    reachable.replaceChildren(
      ...(s.reachableAt.length
        ? s.reachableAt.map((a) =>
            h(
              "li",
              { class: "address" },
              h("code", { class: "address-text", title: a }, a),
              h("button", { class: "button ghost small", "aria-label": "Copy the address", onclick: (e) => copyText(a, e.currentTarget) }, icon(ICONS.copy), h("span", { class: "label" }, "Copy")),
            ),
          )
        : [h("li", { class: "muted" }, "Nowhere yet. Other devices reach this browser through a relay it is connected to.")]),
    );
    const rows = s.peers.map((peer) =>
      h(
        "li",
        { class: "row", dataset: { device: peer.deviceId } },
        h("span", { class: `dot ${peer.connected ? "dot-ok" : "dot-off"}`, "aria-hidden": "true" }),
        h(
          "div",
          { class: "row-main" },
          h("span", { class: "mono", title: peer.deviceId }, shortId(peer.deviceId)),
          h(
            "span",
            { class: "row-sub" },
            `${peer.connected ? "Connected" : "Disconnected"} · `,
            peer.syncing.length ? `syncing ${peer.syncing.map((v) => app.vaultName(v)).join(", ")}` : peer.relay ? "relays for this browser" : "no vault in common yet",
          ),
        ),
        h("span", { class: "badge", dataset: { kind: peer.relay ? "relay" : "direct" } }, peer.relay ? "Relay" : "Direct"),
      ),
    );
    peers.replaceChildren(
      ...(rows.length
        ? rows
        : [h("li", { class: "empty-row" }, s.online ? "No peers yet. Connect to a relay or a desktop above, or redeem an invite code." : "Offline. Edits are kept on this device and sync when the network is back.")]),
    );
    const last = app.lastConnect;
    if (last) {
      if (!address.value) address.value = last.address;
      say(message, last.message, last.state === "error" ? "error" : last.state === "ok" ? "ok" : "info");
      connectButton.disabled = last.state === "pending";
    }
  }

  function renderEvents() {
    events.replaceChildren(
      ...(app.events.length
        ? app.events.slice(0, 30).map(({ at, event }) =>
            h("li", { class: "event" }, h("time", {}, clock(at)), h("span", { class: "badge", dataset: { kind: kindOf(event) } }, event.type), h("span", { class: "event-text" }, describe(event, app))),
          )
        : [h("li", { class: "empty-row" }, "Nothing yet. Connections, sync sessions and incoming changes show up here.")]),
    );
  }

  app.addEventListener("status", renderStatus);
  app.addEventListener("vaults", renderStatus);
  app.addEventListener("events", renderEvents);
  renderStatus();
  renderEvents();
  return { element: root, onShow: () => app.refreshStatus() };
}

function kindOf(event) {
  if (["refused", "rejected", "problem"].includes(event.type)) return "error";
  if (["connected", "vaultJoined", "syncing"].includes(event.type)) return "ok";
  return "muted";
}

function describe(event, app) {
  switch (event.type) {
    case "connected":
      return `Connected to ${shortId(event.deviceId)}`;
    case "disconnected":
      return `Disconnected from ${shortId(event.deviceId)}`;
    case "reachable":
      return `Reachable at ${event.address}`;
    case "syncing":
      return `Syncing ${app.vaultName(event.vaultId)} with ${shortId(event.deviceId)}`;
    case "refused":
      return `${event.byUs ? "Refused" : "Refused by"} ${shortId(event.deviceId)}: ${event.reason} (${event.code})`;
    case "docChanged":
      return `A note in ${app.vaultName(event.vaultId)} changed`;
    case "membershipChanged":
      return `Devices of ${app.vaultName(event.vaultId)} changed`;
    case "vaultJoined":
      return `Joined ${app.vaultName(event.vaultId)}`;
    case "rejected":
      return `Rejected changes from ${shortId(event.deviceId)}: ${event.error}`;
    case "online":
      return event.online ? "The browser is online" : "The browser is offline";
    case "leader":
      return "This tab now holds the connections";
    case "problem":
      return event.message;
    default:
      return JSON.stringify(event);
  }
}

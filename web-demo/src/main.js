// Nexus Notes, an offline-first notes PWA on nexus-sync: opens this browser profile's
// device, builds the shell (header with vault switcher, tab bar / side nav, the four
// screens), registers the service worker, and acts on ?connect= and ?invite=.
import { Nexus, text, splice } from "nexus-sync";
import "./styles.css";
import { App } from "./app.js";
import { h, icon, ICONS, describeError } from "./dom.js";
import { notesView } from "./views/notes.js";
import { syncView } from "./views/sync.js";
import { devicesView } from "./views/devices.js";
import { invitesView } from "./views/invites.js";
import { offersView } from "./views/offers.js";

const TABS = [
  ["notes", "Notes", ICONS.notes],
  ["sync", "Sync", ICONS.sync],
  ["devices", "Devices", ICONS.devices],
  ["invites", "Invites", ICONS.invites],
];

registerServiceWorker();

let nexus;
try {
  nexus = await Nexus.open({ name: "nexus-notes" });
} catch (error) {
  document.getElementById("boot-message").textContent = `Nexus could not start in this browser: ${describeError(error)}`;
  throw error;
}
const app = new App(nexus);
await app.start();

const views = {
  notes: notesView(app),
  sync: syncView(app),
  devices: devicesView(app),
  invites: invitesView(app),
};

// Query parameters for scripted use: ?invite=<code> opens the join form with the code
// filled in; ?connect=<multiaddr> dials it (the outcome shows on the Sync screen).
const params = new URLSearchParams(location.search);
if (params.get("invite")) {
  views.invites.prefill(params.get("invite"));
  app.tab = "invites";
}

document.getElementById("app").replaceChildren(shell());
show(app.tab, {});
app.addEventListener("tab", (e) => show(e.detail.tab, e.detail));

if (params.get("connect")) app.connect(params.get("connect"));
// Used once: a reload should neither dial again nor go back to the join form.
if (params.has("invite") || params.has("connect")) {
  params.delete("invite");
  params.delete("connect");
  const query = params.toString();
  history.replaceState(null, "", `${location.pathname}${query ? `?${query}` : ""}${location.hash}`);
}

window.demo = { nexus, app, views, lib: { text, splice } };
window.demoReady = true;

/** Header, navigation and the screens. */
function shell() {
  const vaultSelect = h("select", {
    class: "vault-select",
    id: "vault-select",
    "aria-label": "Vault",
    onchange: () => app.selectVault(vaultSelect.value),
  });
  const vaultName = h("span", { class: "vault-name", id: "vault-name" });
  const indicator = h("span", { class: "sync-indicator", id: "sync-indicator", role: "status" });
  const nav = h(
    "nav",
    { class: "tabs", "aria-label": "Screens" },
    ...TABS.map(([id, label, paths]) =>
      h("a", { href: `#${id}`, class: "tab", dataset: { tab: id }, onclick: (e) => (e.preventDefault(), app.show(id)) }, icon(paths), h("span", { class: "tab-label" }, label)),
    ),
  );
  const header = h(
    "header",
    { class: "topbar" },
    h("div", { class: "brand" }, h("img", { src: "./icons/icon.svg", alt: "", width: 28, height: 28 }), h("span", {}, "Nexus Notes")),
    h("div", { class: "vault-switcher" }, vaultName, vaultSelect),
    indicator,
  );
  const main = h("main", { class: "content", id: "content" }, offersView(app).element, ...Object.values(views).map((v) => v.element));

  function renderVaults() {
    const several = app.vaults.length > 1;
    vaultSelect.hidden = !several;
    vaultName.hidden = several || !app.vault;
    vaultName.textContent = app.vault?.name ?? "";
    vaultSelect.replaceChildren(
      ...app.vaults.map((v) => h("option", { value: v.id, selected: v.id === app.vault?.id }, app.isRemoved(v) ? `${v.name} (removed)` : v.name)),
    );
  }
  function renderIndicator() {
    const s = app.status;
    const connected = s.peers.filter((p) => p.connected && !p.relay).length;
    const relays = s.peers.filter((p) => p.connected && p.relay).length;
    let label;
    let kind;
    if (!s.online) [label, kind] = ["Offline", "warn"];
    else if (connected) [label, kind] = [`${connected} ${connected === 1 ? "peer" : "peers"}`, "ok"];
    else if (relays) [label, kind] = ["Relay only", "info"];
    else [label, kind] = ["No peers", "muted"];
    indicator.textContent = label;
    indicator.dataset.kind = kind;
    indicator.title = s.leader ? "This tab holds the connections" : "Another tab holds the connections";
  }
  app.addEventListener("vaults", renderVaults);
  app.addEventListener("status", renderIndicator);
  renderVaults();
  renderIndicator();
  return h("div", { class: "layout" }, header, nav, main);
}

function show(tab, detail) {
  for (const [id, view] of Object.entries(views)) {
    const active = id === tab;
    if (view.element.hidden === active) {
      view.element.hidden = !active;
      if (active) view.onShow?.(detail);
      else view.onHide?.();
    } else if (active) view.onShow?.(detail);
  }
  for (const link of document.querySelectorAll(".tab")) {
    const active = link.dataset.tab === tab;
    link.classList.toggle("active", active);
    if (active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  app.tab = tab;
  if (location.hash.slice(1) !== tab) history.replaceState(null, "", `${location.pathname}${location.search}#${tab}`);
  document.getElementById("content")?.scrollTo?.(0, 0);
}

function registerServiceWorker() {
  if (!("serviceWorker" in navigator) || !import.meta.env.PROD) return;
  navigator.serviceWorker.register("./sw.js", { scope: "./" }).catch((error) => {
    console.warn(`The service worker could not be registered; the app works online only: ${error.message}`);
  });
}

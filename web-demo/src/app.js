// The app's shared state: the open Nexus (this browser profile's device), its vaults
// and which one is shown, the peer status, recent engine events, and the current
// screen, and vaults offered to this device. Screens listen to its events: "vaults",
// "status", "events", "tab", "offers".
import { describeError, shortId } from "./dom.js";

const VAULT_KEY = "nexus-notes:vault";
const REMOVED_KEY = "nexus-notes:removed";
const TABS = ["notes", "sync", "devices", "invites"];
const MAX_EVENTS = 80;

export class App extends EventTarget {
  constructor(nexus) {
    super();
    this.nexus = nexus;
    /** Vaults this device holds (`role` null where it was revoked). */
    this.vaults = [];
    /** The vault shown, or null when the device holds none. */
    this.vault = null;
    /** The latest `nexus.status()`. */
    this.status = { deviceId: nexus.deviceId, online: navigator.onLine, leader: false, peers: [], reachableAt: [], joining: 0 };
    /** Recent engine events, newest first: `{ at, event }`. */
    this.events = [];
    this.tab = TABS.includes(location.hash.slice(1)) ? location.hash.slice(1) : "notes";
    /** The last dial: `{ address, state: "pending"|"ok"|"error", message }`. */
    this.lastConnect = null;
    /** Vaults a peer refused this device from as revoked (see #onRefused). */
    this.refusedVaults = new Set(JSON.parse(localStorage.getItem(REMOVED_KEY) ?? "[]"));
    /** Vaults offered to this device by an approval, waiting for the person's answer. */
    this.offers = [];
  }

  /**
   * Whether this device was removed from `vault`: its role is null, or a member
   * refused it as revoked. (A device revoked while it is connected is told so by the
   * refusal, but its own copy of the membership log keeps it as a member.)
   */
  isRemoved(vault) {
    return !!vault && (vault.role == null || this.refusedVaults.has(vault.id));
  }

  /** Subscribes to the engine and loads the vaults and status. */
  async start() {
    this.nexus.on("*", (event) => this.#onEvent(event));
    this.nexus.on("status", (status) => this.#setStatus(status));
    await this.refreshVaults();
    await this.refreshStatus();
    await this.refreshOffers();
    // Status events cover connections; this also catches sync sessions starting.
    setInterval(() => this.refreshStatus(), 5000);
    window.addEventListener("hashchange", () => {
      const tab = location.hash.slice(1);
      if (TABS.includes(tab) && tab !== this.tab) this.show(tab);
    });
    window.addEventListener("online", () => this.refreshStatus());
    window.addEventListener("offline", () => this.refreshStatus());
  }

  /** Switches the screen. */
  show(tab, detail = {}) {
    this.tab = tab;
    if (location.hash.slice(1) !== tab) history.replaceState(null, "", `${location.pathname}${location.search}#${tab}`);
    this.dispatchEvent(new CustomEvent("tab", { detail: { tab, ...detail } }));
  }

  /** Re-reads the vault list (roles change on approval and revocation). */
  async refreshVaults(wanted = this.vault?.id ?? localStorage.getItem(VAULT_KEY)) {
    this.vaults = await this.nexus.vaults();
    this.vault = this.vaults.find((v) => v.id === wanted) ?? this.vaults[0] ?? null;
    this.dispatchEvent(new CustomEvent("vaults"));
  }

  /** Re-reads the vaults offered to this device. */
  async refreshOffers() {
    try {
      this.offers = await this.nexus.offers();
    } catch {
      this.offers = [];
    }
    this.dispatchEvent(new CustomEvent("offers"));
  }

  /** Takes in an offered vault and shows it. */
  async acceptOffer(vaultId) {
    const vault = await this.nexus.acceptOffer(vaultId);
    await this.refreshOffers();
    await this.selectVault(vault.id);
    return vault;
  }

  /** Refuses an offered vault for good. */
  async declineOffer(vaultId) {
    await this.nexus.declineOffer(vaultId);
    await this.refreshOffers();
  }

  /** Shows vault `id`. */
  async selectVault(id) {
    localStorage.setItem(VAULT_KEY, id);
    await this.refreshVaults(id);
  }

  async createVault(name) {
    const vault = await this.nexus.createVault(name);
    await this.selectVault(vault.id);
    return vault;
  }

  async join(code) {
    const vault = await this.nexus.join(code);
    await this.selectVault(vault.id);
    return vault;
  }

  /** Dials `address`; the outcome is kept in `lastConnect` for the Sync screen. */
  async connect(address) {
    this.lastConnect = { address, state: "pending", message: "Connecting…" };
    this.dispatchEvent(new CustomEvent("status"));
    try {
      // A tab that does not lead hands the address to the leader and resolves at once;
      // just after opening, no tab may lead yet and the address would be lost. So wait
      // (briefly) to learn whether this tab leads.
      const leader = await this.#leads();
      const peer = await this.nexus.connect(address);
      this.lastConnect = leader
        ? { address, state: "ok", message: `Connected to ${shortId(peer)}` }
        : { address, state: "ok", message: `Handed to the tab that holds the connections, to reach ${shortId(peer)}` };
    } catch (error) {
      this.lastConnect = { address, state: "error", message: `Could not connect: ${describeError(error)}` };
    }
    this.dispatchEvent(new CustomEvent("status"));
    await this.refreshStatus();
    return this.lastConnect;
  }

  /** Whether this tab holds the connections, waiting up to 3 s for a tab to take them. */
  async #leads() {
    for (let i = 0; i < 30; i++) {
      const status = await this.nexus.status();
      if (status.leader) return true;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return false;
  }

  async refreshStatus() {
    try {
      this.#setStatus(await this.nexus.status());
    } catch {
      // Closed or between tabs: the next event brings a fresh one.
    }
  }

  /** The name of vault `id`, or a short form of the id. */
  vaultName(id) {
    return this.vaults.find((v) => v.id === id)?.name ?? `${id.slice(0, 8)}…`;
  }

  #setStatus(status) {
    this.status = status;
    this.dispatchEvent(new CustomEvent("status"));
  }

  #onEvent(event) {
    this.events.unshift({ at: Date.now(), event });
    this.events.length = Math.min(this.events.length, MAX_EVENTS);
    this.dispatchEvent(new CustomEvent("events", { detail: event }));
    if (event.type === "membershipChanged" || event.type === "vaultJoined") this.refreshVaults();
    if (event.type === "vaultOffered" || event.type === "vaultJoined") this.refreshOffers();
    if (event.type === "refused" && !event.byUs && event.code === "REVOKED" && event.reason.includes(this.nexus.deviceId)) {
      this.#onRefused(event.vaultId);
    }
  }

  /** A peer refused this device as revoked from `vaultId` (the event names it). */
  async #onRefused(vaultId) {
    if (!vaultId) return;
    this.refusedVaults.add(vaultId);
    localStorage.setItem(REMOVED_KEY, JSON.stringify([...this.refusedVaults]));
    await this.refreshVaults();
  }
}

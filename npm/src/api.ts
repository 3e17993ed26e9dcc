/**
 * The TypeScript API over the engine (`nexus-wasm`): a `Nexus` per device, its vaults,
 * and handles on documents in the style of automerge-repo. The engine does the work
 * (storage, signatures, sync); this layer keeps each handle's copy of its document up to
 * date and turns proxy mutations into edit lists.
 */
import { Nexus as Engine } from "./wasm/nexus_wasm.js";
import { recordChange, recordChangeWithResult, type Edit } from "./change.js";
import { NexusError, asNexusError, withDeadline, withNexusErrors, type WaitOptions } from "./errors.js";
import { applyEnginePatches, patchesOfEdits, type Patch } from "./patches.js";

let initialize: (() => Promise<void>) | null = null;
let initialized: Promise<void> | null = null;

/** Called by the entry points: how to load the WebAssembly module, once. */
export function setInitializer(init: () => Promise<void>): void {
  initialize = init;
}

/** Loads the WebAssembly module if that has not happened yet. */
export function ensureInitialized(): Promise<void> {
  if (!initialized) {
    if (!initialize) {
      return Promise.reject(
        new NexusError("NOT_INITIALIZED", 'call initializeWasm(url) from "nexus-sync/slim" before Nexus.open'),
      );
    }
    initialized = initialize().catch((e) => {
      initialized = null;
      throw new NexusError("WASM_LOAD_FAILED", `the WebAssembly module could not be loaded: ${e?.message ?? e}`);
    });
  }
  return initialized;
}

/** A vault's role for a device. */
export type Role = "admin" | "member";

/** What `Nexus.open` takes. */
export interface OpenOptions {
  /** The IndexedDB database, and so the device: tabs that open the same name are one device. Default `"nexus"`. */
  name?: string;
}

/** A device of a vault as seen in its membership log. */
export interface Device {
  deviceId: string;
  role: Role | null;
  status: "member" | "revoked";
  thisDevice: boolean;
}

/** One invite of a vault (times in milliseconds since the Unix epoch). */
export interface Invite {
  /** Its id, for `cancelInvite`. */
  id: string;
  createdBy: string;
  role: Role;
  createdAt: number;
  expiresAt: number;
  /** `void`: its creator is no longer an admin, so it admits nobody. */
  state: "open" | "redeemed" | "cancelled" | "expired" | "void";
  redeemedBy: string | null;
}

/**
 * A vault offered to this device by an approval it never asked for: a member approved this
 * device's id. Nothing of it is stored until `acceptOffer`; `declineOffer` refuses it for
 * good. (A vault offered by a device this tab `connect`ed to by its address is expected,
 * and taken in at once.)
 */
export interface VaultOffer {
  vaultId: string;
  /** Its name, as its creator chose it. */
  name: string;
  role: Role;
  /** The member that offered it. */
  offeredBy: string;
  /** When it arrived (milliseconds since the Unix epoch). */
  offeredAt: number;
}

/** What the peer is doing. */
export interface Status {
  deviceId: string;
  /** The browser's `navigator.onLine`. */
  online: boolean;
  /** Whether this tab holds the network connections for the profile (one tab does). */
  leader: boolean;
  peers: { deviceId: string; connected: boolean; relay: boolean; syncing: string[] }[];
  /** Relay circuit addresses at which this browser can be reached. */
  reachableAt: string[];
  /** Invites being redeemed. */
  joining: number;
}

/** Why a session was refused, in `refused` events. */
export type RefuseCode = "NOT_MEMBER" | "REVOKED" | "PROTOCOL_VIOLATION" | "VERSION" | "BAD_INVITE" | "UNKNOWN_VAULT";

/** An event from the engine. `type` says which; the other fields depend on it. */
export type NexusEvent =
  | { type: "connected" | "disconnected"; deviceId: string }
  | { type: "reachable"; address: string }
  | { type: "syncing"; vaultId: string; deviceId: string }
  | {
      type: "refused";
      deviceId: string;
      /** The vault the session was about (null if the peer never named one). */
      vaultId: string | null;
      code: RefuseCode;
      reason: string;
      /** Whether this device refused (or the peer did). */
      byUs: boolean;
    }
  | { type: "docChanged"; vaultId: string; docId: string }
  | { type: "membershipChanged" | "vaultJoined"; vaultId: string }
  | { type: "vaultOffered"; vaultId: string; name: string; deviceId: string }
  | { type: "rejected"; deviceId: string; error: string }
  | { type: "online"; online: boolean }
  | { type: "leader" }
  | { type: "problem"; message: string };

/** What `handle.on("change", ...)` listeners get. */
export interface ChangeEvent<T> {
  handle: DocHandle<T>;
  /** The document after the change. */
  doc: T;
  /** What changed, in `@automerge/automerge`'s patch shape. */
  patches: Patch[];
  /**
   * Whether this is a `handle.change` of this tab, shown as it ran (before it was
   * stored); `false` for what others wrote, and for the copy going back to the engine's
   * value after a change of this tab was refused.
   */
  local: boolean;
}

type Listener<E> = (event: E) => void;

class Listeners<E> {
  #set = new Set<Listener<E>>();
  add(listener: Listener<E>): () => void {
    this.#set.add(listener);
    return () => this.#set.delete(listener);
  }
  emit(event: E): void {
    for (const listener of [...this.#set]) {
      try {
        listener(event);
      } catch (e) {
        queueMicrotask(() => {
          throw e;
        });
      }
    }
  }
  get size(): number {
    return this.#set.size;
  }
}

function sameHeads(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((h) => b.includes(h));
}

const STATUS_EVENTS = new Set(["connected", "disconnected", "reachable", "syncing", "refused", "online", "leader"]);

/** One device in this browser profile: its key, vaults and documents in IndexedDB, its connections. */
export class Nexus {
  readonly #engine: Engine;
  readonly #events = new Listeners<NexusEvent>();
  readonly #status = new Listeners<Status>();
  readonly #handles = new Map<string, DocHandle<any>>();
  readonly #vaults = new Map<string, Vault>();
  #closed = false;

  private constructor(engine: Engine) {
    this.#engine = engine;
  }

  /** Opens (or creates, on first use) this profile's device and starts syncing. */
  static async open(options: OpenOptions = {}): Promise<Nexus> {
    await ensureInitialized();
    const engine = withNexusErrors(await Engine.open(options.name ?? "nexus").catch((e: unknown) => Promise.reject(asNexusError(e))));
    const nexus = new Nexus(engine);
    await engine.subscribe((event: NexusEvent) => nexus.#dispatch(event));
    return nexus;
  }

  /** This device's id: what an admin approves, as text (also shown as a QR code by apps). */
  get deviceId(): string {
    return this.#engine.deviceId;
  }

  /** @internal */
  get engine(): Engine {
    if (this.#closed) throw new NexusError("CLOSED", "this Nexus was closed");
    return this.#engine;
  }

  /**
   * Dials a peer or relay (WebSocket, WebRTC-direct or relay circuit multiaddr ending in
   * `/p2p/<id>`); resolves with its device id once connected, and at a relay once this
   * browser holds a slot there (so an invite made next carries an address others can
   * reach). Rejects with code `CONNECT` when that takes over 20 s (or `timeoutMs`), with
   * `ABORTED` when `signal` aborts; the engine's own attempt is not stopped.
   */
  connect(address: string, options: WaitOptions = {}): Promise<string> {
    return withDeadline(this.engine.connect(address), options, `connect(${address})`, (ms) =>
      new NexusError("CONNECT", `no connection to ${address} within ${ms} ms`),
    );
  }

  /** Creates a vault with this device as its admin. */
  async createVault(name: string): Promise<Vault> {
    const id = await this.engine.createVault(name);
    return this.vault(id);
  }

  /**
   * The vaults this device holds (including ones it was revoked from: `role` is then
   * null). The same `Vault` object for the same vault every time, kept up to date.
   */
  vaults(): Promise<Vault[]> {
    return this.#syncVaults(undefined);
  }

  /** The engine's vaults into the live `Vault` objects; `changed` had a membership change. */
  async #syncVaults(changed: string | undefined): Promise<Vault[]> {
    const rows: VaultRow[] = await this.engine.vaults();
    return rows.map((row) => {
      let vault = this.#vaults.get(row.id);
      if (vault === undefined) {
        vault = new Vault(this, row);
        this.#vaults.set(row.id, vault);
      } else {
        vault.update(row, row.id === changed);
      }
      return vault;
    });
  }

  /** A vault this device holds, by id. */
  async vault(id: string): Promise<Vault> {
    const found = (await this.vaults()).find((v) => v.id === id);
    if (!found) throw new NexusError("UNKNOWN_VAULT", `this device holds no vault ${id}`);
    return found;
  }

  /**
   * Redeems an invite code; resolves once a member let this device in and the vault is
   * stored. Rejects with `JOIN` past `timeoutMs` and `ABORTED` when `signal` aborts (the
   * engine's own attempt goes on up to its 60 s: a member may still let it in).
   */
  async join(code: string, options: WaitOptions = {}): Promise<Vault> {
    const id = await withDeadline(this.engine.join(code), options, "join", (ms) =>
      new NexusError("JOIN", `no member let this device in within ${ms} ms`),
    );
    return this.vault(id);
  }

  /** Vaults offered to this device and waiting for an answer, oldest first (they wait in the tab that holds the connections). */
  offers(): Promise<VaultOffer[]> {
    return this.engine.offers();
  }

  /** Takes in an offered vault; resolves once it is stored. It syncs from then on. */
  async acceptOffer(vaultId: string): Promise<Vault> {
    await this.engine.acceptOffer(vaultId);
    return this.vault(vaultId);
  }

  /** Declines an offered vault: it is dropped, and refused if offered again. */
  declineOffer(vaultId: string): Promise<void> {
    return this.engine.declineOffer(vaultId);
  }

  /** What the peer is doing now. */
  status(): Promise<Status> {
    return this.engine.status();
  }

  /**
   * Listens to the engine's events (`"*"` for all, or one `type`), or to `"status"`: the
   * new `Status` whenever connections, reachability, leadership or being online change.
   * Returns a function that stops listening.
   */
  on(type: "status", listener: Listener<Status>): () => void;
  on<K extends NexusEvent["type"] | "*">(
    type: K,
    listener: Listener<K extends "*" ? NexusEvent : Extract<NexusEvent, { type: K }>>,
  ): () => void;
  on(type: string, listener: Listener<any>): () => void {
    if (type === "status") return this.#status.add(listener);
    return this.#events.add((event) => {
      if (type === "*" || event.type === type) listener(event);
    });
  }

  /** Stops syncing and closes IndexedDB; everything whose promise resolved is stored. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.#engine.close();
    this.#closed = true;
  }

  /** @internal A handle per document, shared by every `find`. */
  handle<T>(vault: string, doc: string, create: () => DocHandle<T>): DocHandle<T> {
    const key = `${vault}/${doc}`;
    let handle = this.#handles.get(key);
    if (!handle) {
      handle = create();
      this.#handles.set(key, handle);
    }
    return handle;
  }

  /** @internal Drops a handle that failed to load from the cache, so that the next `find` loads afresh. */
  forget(handle: DocHandle<any>): void {
    const key = `${handle.vaultId}/${handle.id}`;
    if (this.#handles.get(key) === handle) this.#handles.delete(key);
  }

  #dispatch(event: NexusEvent): void {
    if (event.type === "docChanged") {
      this.#handles.get(`${event.vaultId}/${event.docId}`)?.refresh(false);
    }
    if (event.type === "membershipChanged") {
      for (const handle of this.#handles.values()) if (handle.vaultId === event.vaultId) handle.refresh(false);
      // Live vault objects: role and member count again, then their events.
      if (this.#vaults.has(event.vaultId) && !this.#closed) this.#syncVaults(event.vaultId).catch(() => {});
    }
    this.#events.emit(event);
    if (STATUS_EVENTS.has(event.type) && this.#status.size > 0 && !this.#closed) {
      this.#engine.status().then(
        (status: Status) => this.#status.emit(status),
        () => {},
      );
    }
  }
}

/** A vault: a set of documents shared by its member devices. */
export class Vault {
  readonly #nexus: Nexus;
  /** The vault's id. */
  readonly id: string;
  /** Its name, as its creator gave it. */
  readonly name: string;
  #role: Role | null;
  #members: number;
  readonly #events = {
    membership: new Listeners<VaultEvent>(),
    role: new Listeners<VaultEvent>(),
    revoked: new Listeners<VaultEvent>(),
  };

  /** @internal */
  constructor(nexus: Nexus, row: VaultRow) {
    this.#nexus = nexus;
    this.id = row.id;
    this.name = row.name;
    this.#role = row.role;
    this.#members = row.members;
  }

  /** This device's role, or null once revoked (kept up to date). */
  get role(): Role | null {
    return this.#role;
  }

  /** How many devices are members (kept up to date). */
  get members(): number {
    return this.#members;
  }

  /**
   * Listens to the vault: `"membership"` after any membership change (devices approved,
   * revoked, invites), `"role"` when this device's role changes, `"revoked"` once this
   * device was revoked. Returns a function that stops listening.
   */
  on(type: "membership" | "role" | "revoked", listener: Listener<VaultEvent>): () => void {
    const listeners = this.#events[type];
    if (listeners === undefined) throw new NexusError("BAD_ARGUMENT", `a vault has "membership", "role" and "revoked" events, not "${type}"`);
    return listeners.add(listener);
  }

  /**
   * @internal The engine's view of the vault now; tells the listeners what changed
   * (`membership`: the engine reported a membership change of this vault).
   */
  update(row: VaultRow, membership: boolean): void {
    const previous = this.#role;
    this.#role = row.role;
    this.#members = row.members;
    const event: VaultEvent = { vault: this, role: row.role, previousRole: previous, members: row.members };
    if (membership) this.#events.membership.emit(event);
    if (row.role === previous) return;
    this.#events.role.emit(event);
    if (row.role === null) this.#events.revoked.emit(event);
  }

  /** An invite code (admins only); it carries this browser's relay addresses. Default: a day, member; at most 30 days. */
  createInvite(options: { expiresInSeconds?: number; role?: Role } = {}): Promise<string> {
    return this.#nexus.engine.createInvite(this.id, options.expiresInSeconds ?? 24 * 3600, options.role ?? "member");
  }

  /** The vault's invites, newest first. */
  invites(): Promise<Invite[]> {
    return this.#nexus.engine.invites(this.id);
  }

  /** Cancels an invite (admins only): a device that has not joined with it by the time the cancellation reaches the others cannot. */
  cancelInvite(inviteId: string): Promise<void> {
    return this.#nexus.engine.cancelInvite(this.id, inviteId);
  }

  /** The vault's devices, members and revoked. */
  devices(): Promise<Device[]> {
    return this.#nexus.engine.devices(this.id);
  }

  /** Approves a device by its id (admins only). */
  approve(deviceId: string, options: { role?: Role } = {}): Promise<void> {
    return this.#nexus.engine.approve(this.id, deviceId, options.role ?? "member");
  }

  /** Revokes a device (admins only): its later changes are refused everywhere and the vault key rotates. */
  revoke(deviceId: string): Promise<void> {
    return this.#nexus.engine.revoke(this.id, deviceId);
  }

  /** The ids of the vault's documents. */
  documents(): Promise<string[]> {
    return this.#nexus.engine.documents(this.id);
  }

  /** Creates a document holding `initial` (`text(...)` and `counter(...)` values too), in one signed change; resolves once it is stored. */
  async create<T extends object = Record<string, unknown>>(initial?: T): Promise<DocHandle<T>> {
    const edits = recordChange({} as Record<string, unknown>, (d) => Object.assign(d, initial ?? {}));
    const id = await this.#nexus.engine.createDocument(this.id, edits);
    return this.find<T>(id);
  }

  /**
   * The handle on a document of this vault, at once, in whatever `state` it is (the
   * same object every `find` resolves with). `find` waits for it to be ready.
   */
  handle<T = Record<string, unknown>>(docId: string): DocHandle<T> {
    return this.#nexus.handle<T>(this.id, docId, () => new DocHandle<T>(this.#nexus, this.id, docId));
  }

  /**
   * A handle on a document of this vault, with its content loaded. A document not on
   * this device yet is waited for (`handle.state` is `"requesting"`) until a peer brings
   * it or `timeoutMs` (default 10 s) passes: then this rejects with `UNAVAILABLE` and
   * the handle, `"unavailable"`, still becomes `"ready"` if the document arrives later
   * (a later `find` resolves at once). `signal` aborts the wait (`ABORTED`).
   */
  async find<T = Record<string, unknown>>(docId: string, options: WaitOptions = {}): Promise<DocHandle<T>> {
    const handle = this.handle<T>(docId);
    handle.markRequested();
    const timeoutMs = options.timeoutMs ?? 10_000;
    try {
      await withDeadline(handle.whenReady(), { signal: options.signal, timeoutMs }, `find(${docId})`, (ms) => {
        handle.markUnavailable();
        return new NexusError(
          "UNAVAILABLE",
          `document ${docId} is not on this device and no peer brought it within ${ms} ms; its handle becomes ready if it arrives later`,
        );
      });
    } catch (error) {
      // Not a document that may still come (a vault not held, the engine closed): the
      // next find loads afresh.
      if (!(error instanceof NexusError && (error.code === "UNAVAILABLE" || error.code === "ABORTED"))) {
        this.#nexus.forget(handle);
      }
      throw error;
    }
    return handle;
  }

}

/** A change shown in the handle that the engine may not hold yet. */
interface Pending {
  edits: Edit[];
  /** The heads of the copy it was recorded on, when nothing was pending before it. */
  base: string[];
  /** The change before it still pending then: it was recorded on top of that one. */
  after: Pending | undefined;
  /** Where it was made, and its hash, once written. */
  at?: string[];
  hash?: string | null;
  written: boolean;
}

/** One vault as the engine lists it. */
interface VaultRow {
  id: string;
  name: string;
  role: Role | null;
  members: number;
}

/** What `vault.on("membership" | "role" | "revoked", ...)` listeners get. */
export interface VaultEvent {
  vault: Vault;
  /** This device's role now (null: revoked). */
  role: Role | null;
  /** Its role before this change. */
  previousRole: Role | null;
  /** How many devices are members now. */
  members: number;
}

/** Where a document handle is (see `DocHandle.state`). */
export type HandleState = "loading" | "requesting" | "ready" | "unavailable";

/** Options of `handle.change`. */
export interface ChangeOptions {
  /** Stored as the Automerge change's message. */
  message?: string;
}

/**
 * A document: its current value, changes to it, and listeners. The value is this tab's
 * copy: a `change` shows in it at once, before the engine signs and stores it.
 */
export class DocHandle<T> {
  readonly #nexus: Nexus;
  /** The vault holding the document. */
  readonly vaultId: string;
  /** The document's id. */
  readonly id: string;
  /** What is shown: the engine's value at `#heads`, then the pending changes. */
  #doc: T | undefined;
  /** The engine's value at `#heads`. */
  #confirmed: T | undefined;
  #heads: string[] = [];
  #pending: Pending[] = [];
  #queue: Promise<void> = Promise.resolve();
  #ready: Promise<void>;
  #loaded!: () => void;
  #failed!: (error: unknown) => void;
  #state: HandleState = "loading";
  readonly #changes = new Listeners<ChangeEvent<T>>();

  /** @internal */
  constructor(nexus: Nexus, vaultId: string, id: string) {
    this.#nexus = nexus;
    this.vaultId = vaultId;
    this.id = id;
    this.#ready = new Promise<void>((resolve, reject) => {
      this.#loaded = resolve;
      this.#failed = reject;
    });
    this.#ready.catch(() => {});
    this.#enqueue(() => this.#load()).catch(() => {});
  }

  /**
   * Where the handle is: `"loading"` from storage, `"requesting"` (the document is not
   * on this device yet, waiting for a peer to bring it), `"ready"`, or `"unavailable"`
   * (a `find` gave up waiting; it still becomes `"ready"` if the document arrives).
   */
  get state(): HandleState {
    return this.#state;
  }

  /** Resolves once the document's content is loaded (it may wait for a peer to bring it). */
  whenReady(): Promise<void> {
    return this.#ready;
  }

  /** @internal A `find` gave up waiting. */
  markUnavailable(): void {
    if (this.#state !== "ready") this.#state = "unavailable";
  }

  /** @internal A `find` waits for it again. */
  markRequested(): void {
    if (this.#state === "unavailable") this.#state = "requesting";
  }

  /** Reads the document from the engine; one not here yet is waited for. */
  async #load(): Promise<void> {
    try {
      const { heads, patches } = await this.#nexus.engine.patches(this.vaultId, this.id, []);
      this.#confirmed = applyEnginePatches({} as T, patches).doc;
      this.#doc = this.#confirmed;
      this.#heads = heads;
      this.#state = "ready";
      this.#loaded();
    } catch (error) {
      if ((error as { code?: string })?.code === "UNKNOWN_DOCUMENT") {
        if (this.#state === "loading") this.#state = "requesting";
        return; // a docChanged event for it loads it again
      }
      this.#failed(error);
    }
  }

  /** The document as plain data (text as strings, counters as numbers). Do not mutate it; use `change`. */
  doc(): T {
    if (this.#doc === undefined) throw new NexusError("NOT_READY", "await vault.find(id) (or handle.whenReady()) before doc()");
    return this.#doc;
  }

  /**
   * The document as Automerge's own `save()` bytes, history included: what
   * `@automerge/automerge`'s `load` opens (changes still being stored are not in it).
   */
  export(): Promise<Uint8Array> {
    return this.#nexus.engine.exportDocument(this.vaultId, this.id);
  }

  /** The heads of the engine's copy this handle shows (changes still being stored are not in them yet). */
  heads(): string[] {
    return this.#heads.slice();
  }

  /**
   * Changes the document: `callback` mutates a draft (`d.title = "x"`, `d.items.push(...)`,
   * `delete d.old`, `splice(d, "note", 0, 0, "hi")`, `increment(d, "count")`), and all of it
   * becomes one signed change. It runs at once, on this tab's copy: `doc()` and the
   * `change` event show it before this returns. The promise resolves when the change is
   * durable in IndexedDB, with the document's heads then; if it rejects (the device was
   * revoked, say), the copy goes back to what the engine holds.
   */
  change(callback: (doc: T) => void, options: ChangeOptions = {}): Promise<string[]> {
    if (this.#doc === undefined) {
      // Not read yet: it runs after the first read (queued first); a document that is
      // not on this device has nothing to change.
      return this.#enqueue(async () => {}).then(() => {
        if (this.#doc === undefined) {
          throw new NexusError("NOT_READY", `document ${this.id} is not on this device (yet): await vault.find(id) before change`);
        }
        return this.change(callback, options);
      });
    }
    const { edits, result } = recordChangeWithResult(this.#doc, callback);
    if (edits.length === 0) return Promise.resolve(this.heads());
    const pending: Pending = { edits, base: this.#heads.slice(), after: this.#pending.at(-1), written: false };
    this.#pending.push(pending);
    const shown = applyEnginePatches(this.#doc, patchesOfEdits(edits)).patches;
    this.#doc = result;
    this.#changes.emit({ handle: this, doc: result, patches: shown, local: true });
    const write = async (): Promise<string[]> => {
      // Made on the copy it was recorded on: after the pending change before it, or
      // on the heads shown then, so its indexes mean what they meant there.
      const before = pending.after;
      const at = before === undefined ? pending.base : before.hash ? [before.hash] : (before.at ?? pending.base);
      try {
        const written = await this.#nexus.engine.change(this.vaultId, this.id, edits, at, options.message ?? null);
        pending.at = at;
        pending.hash = written.change;
        pending.written = true;
        if (this.#pending[0] === pending && sameHeads(at, this.#heads) && sameHeads(written.before, this.#heads)) {
          // Nothing else came in between: the engine's value is the one shown.
          this.#pending.shift();
          this.#confirmed = result;
          this.#heads = written.heads;
          return this.heads();
        }
        await this.#update();
        return this.heads();
      } catch (error) {
        // Never written: shown no more.
        this.#pending = this.#pending.filter((p) => p !== pending);
        for (const later of this.#pending) {
          if (later.after !== pending) continue;
          later.after = pending.after;
          if (pending.after === undefined) later.base = pending.base;
        }
        this.#show(this.#replay());
        throw error;
      }
    };
    let heads: string[] = [];
    return this.#enqueue(async () => {
      heads = await write();
    }).then(() => heads);
  }

  /** Calls `listener` after each change, local or from other tabs and devices. Returns a function that stops it. */
  on(type: "change", listener: Listener<ChangeEvent<T>>): () => void {
    if (type !== "change") throw new NexusError("BAD_ARGUMENT", `a document handle has "change" events, not "${type}"`);
    return this.#changes.add(listener);
  }

  /** @internal Takes in what changed since the handle's heads (or the document, arrived). */
  refresh(_local: boolean): void {
    this.#enqueue(() => (this.#confirmed === undefined ? this.#load() : this.#update())).catch(() => {});
  }

  /**
   * Brings the engine's value up to its heads now; the changes written meanwhile are in
   * it, the ones still pending are shown on top of it again.
   */
  async #update(): Promise<void> {
    const { heads, patches } = await this.#nexus.engine.patches(this.vaultId, this.id, this.#heads);
    this.#heads = heads;
    if (patches.length === 0 && !this.#pending.some((p) => p.written)) return;
    const applied = applyEnginePatches(this.#confirmed as T, patches);
    this.#confirmed = applied.doc;
    this.#pending = this.#pending.filter((p) => !p.written);
    this.#show(this.#replay(), applied.patches);
  }

  /** The engine's value with the pending changes on top (one that no longer fits is left out). */
  #replay(): T {
    let doc = this.#confirmed as T;
    for (const pending of this.#pending) {
      try {
        doc = applyEnginePatches(doc, patchesOfEdits(pending.edits)).doc;
      } catch {
        // Recorded on a shape that changed under it: the engine decides when it arrives.
      }
    }
    return doc;
  }

  /**
   * Shows `doc`, and tells the listeners when it differs from what was shown (what
   * others wrote, or a local change that was refused or merged differently).
   */
  #show(doc: T, patches: Patch[] = []): void {
    const before = this.#doc;
    this.#doc = doc;
    if (JSON.stringify(before) === JSON.stringify(doc)) return;
    this.#changes.emit({ handle: this, doc, patches, local: false });
  }

  #enqueue(work: () => Promise<void>): Promise<void> {
    const next = this.#queue.then(work);
    this.#queue = next.catch(() => {});
    return next;
  }
}

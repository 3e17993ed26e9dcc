// The notes of one vault: a document handle per note, kept up to date, listed newest
// first. A note is a document `{ title, body: text(…), created, updated }`; deleting
// one marks it `deleted: true` (the package has no call that removes a document).
import { text } from "nexus-sync";

/** When a note last changed, for ordering (documents made elsewhere may lack it). */
const stamp = (doc) => doc.updated ?? doc.created ?? 0;

export class NotesStore extends EventTarget {
  #handles = new Map();
  #stops = [];
  #queue = Promise.resolve();
  #closed = false;

  constructor(vault) {
    super();
    this.vault = vault;
  }

  /** Lists the vault's documents again and loads the ones not seen yet. */
  refresh() {
    this.#queue = this.#queue.then(() => this.#load()).catch((error) => {
      this.dispatchEvent(new CustomEvent("error", { detail: error }));
    });
    return this.#queue;
  }

  async #load() {
    if (this.#closed) return;
    const ids = await this.vault.documents();
    const fresh = ids.filter((id) => !this.#handles.has(id));
    const handles = await Promise.all(fresh.map((id) => this.vault.find(id)));
    if (this.#closed) return;
    for (const handle of handles) {
      this.#handles.set(handle.id, handle);
      this.#stops.push(handle.on("change", (event) => this.#changed(handle.id, event)));
    }
    this.loaded = true;
    this.#changed(null);
  }

  #changed(id, event) {
    this.dispatchEvent(new CustomEvent("change", { detail: { id, event } }));
  }

  has(id) {
    return this.#handles.has(id);
  }

  handle(id) {
    return this.#handles.get(id);
  }

  /** The notes shown: `[{ id, doc }]`, newest first, without deleted ones. */
  list() {
    return [...this.#handles.values()]
      .map((handle) => ({ id: handle.id, doc: handle.doc() }))
      .filter(({ doc }) => !doc.deleted)
      .sort((a, b) => stamp(b.doc) - stamp(a.doc) || a.id.localeCompare(b.id));
  }

  /** Creates an empty note; resolves with its handle once it is stored. */
  async create() {
    const now = Date.now();
    // The body is made collaborative text by a change of its own: `vault.create`
    // passes its initial value to the engine as plain JSON, so `text("")` there would
    // be stored as the object { value: "" }.
    const handle = await this.vault.create({ title: "", created: now, updated: now });
    await handle.change((d) => {
      d.body = text("");
    });
    await this.refresh();
    return handle;
  }

  /** Marks note `id` deleted on every device. */
  async remove(id) {
    await this.#handles.get(id)?.change((d) => {
      d.deleted = true;
      d.updated = Date.now();
    });
  }

  close() {
    this.#closed = true;
    for (const stop of this.#stops) stop();
    this.#stops = [];
  }
}

// The Notes screen: the current vault's notes (list, create, delete) and an editor.
// The body is collaborative text: each edit in the textarea becomes the minimal
// splice, and the cursor stays put when changes from other tabs or devices arrive.
// With no vault yet it shows the first-run choices; on a revoked device it is read-only.
import { splice, text } from "nexus-sync";
import { h, icon, ICONS, timeAgo, describeError, say, confirmButton } from "../dom.js";
import { NotesStore } from "../notes-store.js";
import { diff, mapThroughDiff, mapThroughPatches } from "../textdiff.js";

const bodyOf = (doc) => (typeof doc.body === "string" ? doc.body : doc.body == null ? "" : JSON.stringify(doc.body));
const firstLine = (doc) => bodyOf(doc).split("\n").find((line) => line.trim()) ?? "";

export function notesView(app) {
  const root = h("section", { class: "screen", id: "screen-notes", "aria-label": "Notes" });
  let store = null;
  let selectedId = null;
  let editor = null;
  let filter = "";

  const banner = h("div", { class: "banner banner-danger", id: "removed-banner", role: "alert", hidden: true });
  const list = h("ul", { class: "note-list", id: "note-list", "aria-label": "Notes" });
  const listEmpty = h("div", { class: "empty", id: "notes-list-empty", hidden: true });
  const listError = h("p", { class: "inline-message", hidden: true });
  const newButton = h("button", { class: "button primary", id: "new-note", onclick: createNote }, icon(ICONS.plus), h("span", { class: "label" }, "New note"));
  const search = h("input", {
    type: "search",
    class: "input search",
    id: "note-search",
    placeholder: "Search notes",
    "aria-label": "Search notes",
    oninput: () => {
      filter = search.value.trim().toLowerCase();
      renderList();
    },
  });
  const heading = h("h2", { class: "pane-title", id: "notes-heading" }, "Notes");
  const editorPane = h("article", { class: "editor-pane", id: "editor-pane" });
  const layout = h(
    "div",
    { class: "notes-layout" },
    h(
      "aside",
      { class: "list-pane" },
      h("div", { class: "pane-header" }, heading, newButton),
      h("div", { class: "search-wrap" }, icon(ICONS.search), search),
      listError,
      list,
      listEmpty,
    ),
    editorPane,
  );

  const readOnly = () => app.isRemoved(app.vault);

  function update() {
    if (!app.vault) {
      store?.close();
      store = null;
      closeEditor();
      root.replaceChildren(welcome(app));
      return;
    }
    if (!store || store.vault.id !== app.vault.id) {
      store?.close();
      closeEditor();
      selectedId = null;
      store = new NotesStore(app.vault);
      store.addEventListener("change", onStoreChange);
      store.addEventListener("error", (e) => say(listError, `Could not load the notes: ${describeError(e.detail)}`));
      store.refresh();
      root.replaceChildren(banner, layout);
      renderList();
    }
    const removed = app.isRemoved(app.vault);
    banner.hidden = !removed;
    banner.replaceChildren(
      icon(ICONS.lock),
      h("div", {}, h("strong", {}, `This device was removed from ${app.vault.name}; its edits no longer sync.`), " Its notes stay readable on this device but can no longer be changed."),
    );
    newButton.disabled = removed;
    heading.textContent = app.vault.name;
    editor?.setReadOnly(removed);
  }

  function onStoreChange({ detail: { id, event } }) {
    renderList();
    if (editor && id === editor.id) {
      if (store.handle(id).doc().deleted) {
        closeEditor();
        selectedId = null;
        renderEditor();
      } else editor.onChange(event);
    }
  }

  function renderList() {
    if (!store) return;
    const focusedId = document.activeElement?.closest?.(".note-item")?.dataset.id;
    const notes = store.list().filter(({ doc }) => !filter || `${doc.title ?? ""}\n${bodyOf(doc)}`.toLowerCase().includes(filter));
    list.replaceChildren(
      ...notes.map(({ id, doc }) =>
        h(
          "li",
          {},
          h(
            "button",
            {
              class: `note-item${id === selectedId ? " selected" : ""}`,
              dataset: { id },
              "aria-current": id === selectedId ? "true" : undefined,
              onclick: () => select(id),
            },
            h("span", { class: "note-item-title" }, doc.title?.trim() || "Untitled"),
            h("span", { class: "note-item-snippet" }, firstLine(doc) || "No text yet"),
            h("span", { class: "note-item-time" }, timeAgo(doc.updated ?? doc.created)),
          ),
        ),
      ),
    );
    if (focusedId) list.querySelector(`.note-item[data-id="${focusedId}"]`)?.focus();
    listEmpty.hidden = notes.length > 0 || !store.loaded;
    listEmpty.replaceChildren(
      filter
        ? h("p", {}, `No note matches “${search.value.trim()}”.`)
        : h(
            "div",
            {},
            h("p", { class: "empty-title" }, "No notes yet"),
            h(
              "p",
              {},
              readOnly()
                ? "This device can no longer add notes to this vault."
                : "Press New note to write one. It is saved on this device at once and reaches the vault's other devices whenever one of them is reachable.",
            ),
          ),
    );
    if (!editor) renderEditor();
  }

  function renderEditor() {
    if (editor) return;
    layout.classList.toggle("editing", false);
    editorPane.replaceChildren(
      h(
        "div",
        { class: "empty editor-empty" },
        icon(ICONS.notes),
        h("p", { class: "empty-title" }, "No note open"),
        h("p", {}, store?.list().length ? "Pick a note from the list to read or edit it." : "Your notes will open here."),
      ),
    );
  }

  function select(id) {
    if (selectedId === id && editor) {
      layout.classList.add("editing");
      return;
    }
    closeEditor();
    selectedId = id;
    editor = noteEditor(store.handle(id), {
      readOnly: readOnly(),
      onBack: () => {
        layout.classList.remove("editing");
        list.querySelector(`.note-item[data-id="${id}"]`)?.focus();
      },
      onDelete: async () => {
        await store.remove(id);
        closeEditor();
        selectedId = null;
        renderList();
      },
    });
    editorPane.replaceChildren(editor.element);
    layout.classList.add("editing");
    renderList();
  }

  function closeEditor() {
    editor?.close();
    editor = null;
  }

  async function createNote() {
    newButton.disabled = true;
    say(listError, "");
    try {
      const handle = await store.create();
      select(handle.id);
      document.getElementById("note-title")?.focus();
    } catch (error) {
      say(listError, `Could not create a note: ${describeError(error)}`);
    } finally {
      newButton.disabled = readOnly();
    }
  }

  app.addEventListener("vaults", update);
  const relist = (event) => {
    if (store && event.vaultId === store.vault.id && (event.type !== "docChanged" || !store.has(event.docId))) store.refresh();
  };
  app.nexus.on("docChanged", relist);
  app.nexus.on("membershipChanged", relist);
  app.nexus.on("vaultJoined", relist);
  // Relative times ("2 min ago") age.
  setInterval(() => store && renderList(), 60_000);
  update();

  return {
    element: root,
    /** For tests and scripts: the open store and selection. */
    get store() {
      return store;
    },
    select,
  };
}

/** The editor of one note. */
function noteEditor(handle, { readOnly, onBack, onDelete }) {
  const doc = handle.doc();
  const title = h("input", { class: "title-input", id: "note-title", placeholder: "Title", "aria-label": "Title", value: doc.title ?? "" });
  const body = h("textarea", { class: "body-input", id: "note-body", placeholder: "Start writing…", "aria-label": "Note text", value: bodyOf(doc) });
  const state = h("span", { class: "save-state", id: "save-state", "aria-live": "polite" }, "Saved on this device");
  const error = h("p", { class: "inline-message", id: "note-error", hidden: true });
  const meta = h("p", { class: "editor-meta" });
  const deleteButton = confirmButton(
    h("button", { class: "button ghost danger", id: "delete-note" }, icon(ICONS.trash), h("span", { class: "label" }, "Delete")),
    "Delete for everyone?",
    onDelete,
  );
  const element = h(
    "div",
    { class: "editor" },
    h(
      "div",
      { class: "editor-toolbar" },
      h("button", { class: "button ghost back", onclick: onBack, "aria-label": "Back to the list" }, icon(ICONS.back), h("span", { class: "label" }, "Notes")),
      state,
      deleteButton,
    ),
    error,
    title,
    body,
    meta,
  );

  /** What the body held after the last change this editor took in. */
  let base = bodyOf(doc);
  let pendingBody = 0;
  let pendingTitle = 0;

  function saving(promise, counter) {
    state.textContent = "Saving…";
    return promise
      .then(
        () => say(error, ""),
        (e) => say(error, `Not saved: ${describeError(e)}`),
      )
      .finally(() => {
        counter();
        if (pendingBody === 0 && pendingTitle === 0) {
          state.textContent = "Saved on this device";
          reconcile(null);
        }
      });
  }

  body.addEventListener("input", () => {
    pendingBody++;
    const change = handle.change((d) => {
      const next = body.value;
      if (typeof d.body !== "string") {
        d.body = text(next);
      } else {
        const edit = diff(d.body, next, body.selectionEnd);
        if (edit.remove === 0 && edit.insert === "") return;
        splice(d, "body", edit.index, edit.remove, edit.insert);
      }
      d.updated = Date.now();
    });
    // A body written as a plain string elsewhere (not text) cannot be spliced: make it
    // text holding what the textarea shows.
    const stored = change.catch((error) => {
      if (error?.code !== "EDIT") throw error;
      return handle.change((d) => {
        d.body = text(body.value);
        d.updated = Date.now();
      });
    });
    saving(stored, () => pendingBody--);
  });

  title.addEventListener("input", () => {
    pendingTitle++;
    const change = handle.change((d) => {
      if (d.title === title.value) return;
      d.title = title.value;
      d.updated = Date.now();
    });
    saving(change, () => pendingTitle--);
  });

  /**
   * Brings the fields up to date with the document, unless local edits are still on
   * their way into it (their own change event comes next). The selection is carried
   * through the change: by the text patches when they apply to what the textarea
   * shows, else by the difference between the old and new text.
   */
  function reconcile(event) {
    const current = handle.doc();
    if (pendingBody === 0) {
      const next = bodyOf(current);
      const old = body.value;
      if (old !== next) {
        const start = body.selectionStart;
        const end = body.selectionEnd;
        const onBody = event && !event.local && old === base ? event.patches.filter((p) => p.path[0] === "body") : null;
        const textPatches = onBody?.every((p) => p.path.length === 2) ? onBody : null;
        const edit = diff(old, next);
        const map = (cursor) => (textPatches && mapThroughPatches(cursor, textPatches)) ?? mapThroughDiff(cursor, edit);
        const scroll = body.scrollTop;
        const focused = document.activeElement === body;
        body.value = next;
        if (focused) body.setSelectionRange(map(start), map(end));
        body.scrollTop = scroll;
      }
      base = next;
    }
    if (pendingTitle === 0 && title.value !== (current.title ?? "")) {
      const focused = document.activeElement === title;
      const at = title.selectionStart;
      title.value = current.title ?? "";
      if (focused) title.setSelectionRange(at, at);
    }
    const when = current.updated ?? current.created;
    meta.textContent = `${when ? `Edited ${timeAgo(when)} · ` : ""}${Array.from(bodyOf(current)).length} characters`;
  }

  function setReadOnly(value) {
    title.readOnly = value;
    body.readOnly = value;
    deleteButton.disabled = value;
    element.classList.toggle("read-only", value);
    if (value) state.textContent = "Read-only";
  }

  setReadOnly(readOnly);
  reconcile(null);
  return {
    id: handle.id,
    element,
    onChange: reconcile,
    setReadOnly,
    close() {},
  };
}

/** First run: the device holds no vault yet. */
function welcome(app) {
  const name = h("input", { class: "input", id: "welcome-vault-name", placeholder: "e.g. Family", required: true, maxLength: 60, "aria-label": "Vault name" });
  const message = h("p", { class: "inline-message", hidden: true });
  const createButton = h("button", { class: "button primary", id: "welcome-create", type: "submit" }, "Create vault");
  const form = h(
    "form",
    {
      class: "inline-form",
      onsubmit: async (e) => {
        e.preventDefault();
        createButton.disabled = true;
        say(message, "");
        try {
          await app.createVault(name.value.trim() || "My notes");
        } catch (error) {
          say(message, `Could not create the vault: ${describeError(error)}`);
          createButton.disabled = false;
        }
      },
    },
    name,
    createButton,
  );
  return h(
    "div",
    { class: "welcome", id: "welcome" },
    h("img", { src: "./icons/icon.svg", alt: "", width: 72, height: 72, class: "welcome-logo" }),
    h("h1", {}, "Welcome to Nexus Notes"),
    h(
      "p",
      { class: "lead" },
      "Notes live in a vault: a set of documents shared by the devices you approve. They are saved on this device first and sync straight between your devices or through a relay, online or not.",
    ),
    h(
      "div",
      { class: "choice-grid" },
      h("div", { class: "card choice" }, h("h2", {}, "Create a vault"), h("p", {}, "Start fresh. This device becomes the vault's admin and can invite others."), form, message),
      h(
        "div",
        { class: "card choice" },
        h("h2", {}, "Join with an invite code"),
        h("p", {}, "Got a code starting with nexus1 from another device? Redeem it to get that vault's notes."),
        h("button", { class: "button secondary", id: "welcome-join", onclick: () => app.show("invites", { focus: "join" }) }, "Join with an invite code"),
      ),
    ),
    h(
      "p",
      { class: "muted small" },
      "An admin can also add this device by its DeviceId: ",
      h("a", { href: "#devices", onclick: (e) => (e.preventDefault(), app.show("devices")) }, "show this device's id"),
      ".",
    ),
  );
}

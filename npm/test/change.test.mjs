// The TypeScript layer without the engine: what edits a change callback records, and
// that patches bring a copy of a document to the engine's value. Runs on the compiled
// dist/ (scripts/build-npm) with Node's test runner.
import { test } from "node:test";
import assert from "node:assert/strict";
import { recordChange, text, counter, splice, increment, NexusError } from "../dist/change.js";
import { applyPatches, applyEnginePatches } from "../dist/patches.js";

const doc = { title: "groceries", items: ["milk", "eggs", "rice"], meta: { by: "ana" }, note: "buy soon", count: 3 };

test("map writes, deletes and nested objects become put and delete edits", () => {
  const edits = recordChange(doc, (d) => {
    d.title = "market";
    delete d.meta.by;
    d.meta.tags = ["weekly"];
    d.meta.tags.push("food");
  });
  assert.deepEqual(edits, [
    { op: "put", path: ["title"], value: "market" },
    { op: "delete", path: ["meta", "by"] },
    { op: "put", path: ["meta", "tags"], value: ["weekly"] },
    { op: "insert", path: ["meta", "tags", 1], value: "food" },
  ]);
  assert.equal(doc.title, "groceries", "the document given is left as it was");
});

test("list methods become inserts and deletes at the right indexes", () => {
  const edits = recordChange(doc, (d) => {
    d.items.unshift("tea");           // tea milk eggs rice
    d.items.splice(1, 2, "bread");    // tea bread rice
    d.items.pop();                    // tea bread
    d.items[0] = "coffee";            // coffee bread
    d.items[2] = "jam";               // coffee bread jam
    d.items.shift();                  // bread jam
    assert.deepEqual([...d.items], ["bread", "jam"], "the draft sees its own writes");
  });
  assert.deepEqual(edits, [
    { op: "insert", path: ["items", 0], value: "tea" },
    { op: "delete", path: ["items", 1] },
    { op: "delete", path: ["items", 1] },
    { op: "insert", path: ["items", 1], value: "bread" },
    { op: "delete", path: ["items", 2] },
    { op: "put", path: ["items", 0], value: "coffee" },
    { op: "insert", path: ["items", 2], value: "jam" },
    { op: "delete", path: ["items", 0] },
  ]);
});

test("text and counters are marked, spliced and incremented", () => {
  const edits = recordChange({ note: "buy soon", count: 3 }, (d) => {
    d.body = text("héllo 🌍");
    // UTF-16 positions, as JavaScript counts: the emoji is two units.
    splice(d, "body", 6, 2, "world");
    d.likes = counter(1);
    increment(d, "likes", 2);
    assert.equal(d.body, "héllo world");
    assert.equal(d.likes, 3);
  });
  assert.deepEqual(edits, [
    { op: "put", path: ["body"], value: "héllo 🌍", kind: "text" },
    { op: "splice", path: ["body"], index: 6, delete: 1, insert: "world" },
    { op: "put", path: ["likes"], value: 1, kind: "counter" },
    { op: "increment", path: ["likes"], by: 2 },
  ]);
});

test("text() and counter() inside a literal are written with their kind at their own path", () => {
  const edits = recordChange({ title: "t" }, (d) => {
    d.meta = { body: text("hi"), likes: counter(2), tags: [text("a"), "b"] };
    d.list = [];
    d.list.push({ note: text("n") });
    splice(d.meta, "body", 2, 0, "!");
    assert.equal(d.meta.body, "hi!");
  });
  assert.deepEqual(edits, [
    { op: "put", path: ["meta"], value: { body: "hi", likes: 2, tags: ["a", "b"] } },
    { op: "put", path: ["meta", "body"], value: "hi", kind: "text" },
    { op: "put", path: ["meta", "likes"], value: 2, kind: "counter" },
    { op: "put", path: ["meta", "tags", 0], value: "a", kind: "text" },
    { op: "put", path: ["list"], value: [] },
    { op: "insert", path: ["list", 0], value: { note: "n" } },
    { op: "put", path: ["list", 0, "note"], value: "n", kind: "text" },
    { op: "splice", path: ["meta", "body"], index: 2, delete: 0, insert: "!" },
  ]);
});

test("what cannot be stored is refused with a code, naming the place", () => {
  const refuse = (callback, pattern) =>
    assert.throws(() => recordChange(doc, callback), (e) => e instanceof NexusError && e.code === "BAD_CHANGE" && pattern.test(e.message));
  refuse((d) => { d.when = new Date(); }, /\["when"\].*cannot be stored/);
  refuse((d) => { d.x = undefined; }, /undefined cannot be stored/);
  refuse((d) => { d.n = NaN; }, /cannot be stored/);
  refuse((d) => { d.rows = [{ n: 1 }]; const first = d.rows[0]; d.rows.shift(); first.done = true; }, /removed or replaced earlier/);
  refuse((d) => { d.items[9] = "x"; }, /past the end/);
  refuse((d) => splice(d, "count", 0, 0, "x"), /\["count"\] is not text/);
  refuse((d) => splice(d, "title", 8, 2, "x"), /past the end of \["title"\]/);
  refuse((d) => { d.e = text("a🌍"); splice(d, "e", 2, 0, "x"); }, /inside a character/);
  refuse(() => splice({ plain: true }, "plain", 0, 0), /inside handle.change/);
  refuse(async (d) => { d.title = "x"; }, /synchronous/);
});

const todos = { list: [{ id: 1, title: "milk" }, { id: 2, title: "eggs" }, { id: 3, title: "rice" }] };

test("a draft object is the same object however it is reached, so indexOf and includes find it", () => {
  const edits = recordChange(todos, (d) => {
    const two = d.list.find((t) => t.id === 2);
    assert.equal(two, d.list[1], "the same draft object for the same item");
    assert.equal(d.list.indexOf(two), 1);
    assert.equal(d.list.lastIndexOf(two), 1);
    assert.ok(d.list.includes(two));
    assert.equal(d.list.findIndex((t) => t === two), 1);
    assert.equal(d.list.indexOf({ id: 2, title: "eggs" }), -1, "a look-alike is not the item, as on a plain array");
    d.list.splice(d.list.indexOf(two), 1);
  });
  assert.deepEqual(edits, [{ op: "delete", path: ["list", 1] }], "the item asked for is deleted, not the last");
});

test("a draft object read before a splice still edits its own item after it", () => {
  const edits = recordChange(todos, (d) => {
    const rice = d.list[2];
    d.list.unshift({ id: 0, title: "tea" });
    d.list.splice(1, 1);
    rice.title = "brown rice";
    assert.equal(d.list.at(-1).title, "brown rice");
  });
  assert.deepEqual(edits, [
    { op: "insert", path: ["list", 0], value: { id: 0, title: "tea" } },
    { op: "delete", path: ["list", 1] },
    { op: "put", path: ["list", 2, "title"], value: "brown rice" },
  ]);
});

test("sort, reverse, fill and copyWithin behave as on a plain array and write what moved", () => {
  const plainArray = (fn) => { const a = ["c", "a", "d", "b"]; fn(a); return a; };
  for (const fn of [
    (a) => a.sort(),
    (a) => a.sort((x, y) => (x < y ? 1 : -1)),
    (a) => a.reverse(),
    (a) => a.fill("z", 1, 3),
    (a) => a.copyWithin(0, 2),
  ]) {
    let seen;
    const edits = recordChange({ items: ["c", "a", "d", "b"] }, (d) => {
      const returned = fn(d.items);
      assert.equal(returned, d.items, "returns the list itself");
      seen = [...d.items];
    });
    assert.deepEqual(seen, plainArray(fn), String(fn));
    for (const edit of edits) assert.equal(edit.op, "put", "only the places that changed are written");
  }
  const edits = recordChange(todos, (d) => {
    d.list.sort((x, y) => y.id - x.id);
    assert.deepEqual(d.list.map((t) => t.id), [3, 2, 1]);
  });
  assert.deepEqual(edits.map((e) => e.path), [["list", 0], ["list", 2]], "the middle item stays");
});

test("iteration, slice, map and filter see draft objects, and writing one back copies it", () => {
  const edits = recordChange(todos, (d) => {
    const [first] = [...d.list];
    assert.equal(first, d.list[0]);
    assert.equal(d.list.slice(1)[0], d.list[1]);
    assert.deepEqual(d.list.filter((t) => t.id > 1).map((t) => t.title), ["eggs", "rice"]);
    const [removed] = d.list.splice(0, 1);
    d.list.push(removed);
    assert.deepEqual(d.list.map((t) => t.id), [2, 3, 1]);
  });
  assert.deepEqual(edits, [
    { op: "delete", path: ["list", 0] },
    { op: "insert", path: ["list", 2], value: { id: 1, title: "milk" } },
  ]);
});

test("nothing changed records nothing", () => {
  assert.deepEqual(recordChange(doc, (d) => { void d.items.map((i) => i.length); }), []);
});

test("patches update a copy and share what did not change", () => {
  const before = { title: "a", items: ["x", "y"], meta: { by: "ana" }, note: "héllo", count: 1 };
  const after = applyPatches(before, [
    { action: "put", path: ["title"], value: "b" },
    { action: "insert", path: ["items", 1], values: ["z", "w"] },
    { action: "del", path: ["items", 0] },
    { action: "splice", path: ["note", 5], value: " 🌍" },
    { action: "del", path: ["note", 0], length: 2 },
    { action: "inc", path: ["count"], value: 4 },
    { action: "put", path: ["extra"], value: {} },
    { action: "put", path: ["extra", "k"], value: [] },
    { action: "insert", path: ["extra", "k", 0], values: [1] },
    { action: "conflict", path: ["title"] },
  ]);
  assert.deepEqual(after, { title: "b", items: ["z", "w", "y"], meta: { by: "ana" }, note: "llo 🌍", count: 5, extra: { k: [1] } });
  assert.deepEqual(before, { title: "a", items: ["x", "y"], meta: { by: "ana" }, note: "héllo", count: 1 });
  assert.equal(after.meta, before.meta, "untouched objects are shared");
});

test("engine patches count code points; the package hands them out in UTF-16 units", () => {
  const before = { note: "a🌍b" };
  // The engine inserts at code point 2 (after the emoji) and deletes code point 1 (it).
  const { doc, patches } = applyEnginePatches(before, [
    { action: "splice", path: ["note", 2], value: "!" },
    { action: "del", path: ["note", 1] },
  ]);
  assert.equal(doc.note, "a!b");
  assert.deepEqual(patches, [
    { action: "splice", path: ["note", 3], value: "!" },
    { action: "del", path: ["note", 1], length: 2 },
  ]);
  assert.deepEqual(applyPatches(before, patches), doc, "the UTF-16 patches make the same document");
});

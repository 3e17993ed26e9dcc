// The TypeScript layer without the engine: what edits a change callback records, and
// that patches bring a copy of a document to the engine's value. Runs on the compiled
// dist/ (scripts/build-npm) with Node's test runner.
import { test } from "node:test";
import assert from "node:assert/strict";
import { recordChange, text, counter, splice, increment, NexusError } from "../dist/change.js";
import { applyPatches } from "../dist/patches.js";

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
    splice(d, "body", 6, 1, "world");
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

test("what cannot be stored is refused with a code, naming the place", () => {
  const refuse = (callback, pattern) =>
    assert.throws(() => recordChange(doc, callback), (e) => e instanceof NexusError && e.code === "BAD_CHANGE" && pattern.test(e.message));
  refuse((d) => { d.when = new Date(); }, /\["when"\].*cannot be stored/);
  refuse((d) => { d.x = undefined; }, /undefined cannot be stored/);
  refuse((d) => { d.n = NaN; }, /cannot be stored/);
  refuse((d) => { d.items.sort(); }, /sort\(\) is not supported/);
  refuse((d) => { d.items[9] = "x"; }, /past the end/);
  refuse((d) => splice(d, "count", 0, 0, "x"), /\["count"\] is not text/);
  refuse((d) => splice(d, "title", 8, 2, "x"), /past the end of \["title"\]/);
  refuse(() => splice({ plain: true }, "plain", 0, 0), /inside handle.change/);
  refuse(async (d) => { d.title = "x"; }, /synchronous/);
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

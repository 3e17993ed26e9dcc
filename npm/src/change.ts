/**
 * Recording a change: the callback given to `handle.change` mutates a draft of the
 * document through proxies, and every mutation is written down as an edit in the list
 * format the engine applies in one signed change (`nexus_core::json::apply_edits`).
 */

/** One edit, as the engine takes it. */
export type Edit =
  | { op: "put"; path: Path; value: Json; kind?: "text" | "counter" }
  | { op: "insert"; path: Path; value: Json; kind?: "text" | "counter" }
  | { op: "delete"; path: Path }
  | { op: "splice"; path: Path; index: number; delete: number; insert: string }
  | { op: "increment"; path: Path; by: number };

/** Map keys and list indexes from the document root. */
export type Path = (string | number)[];

/** What a document holds. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const PATH = Symbol("nexus.path");
const RECORDER = Symbol("nexus.recorder");
const TARGET = Symbol("nexus.target");
const MARK = Symbol("nexus.kind");

/** A value marked to be stored as collaborative text or as a counter. */
interface Marked {
  [MARK]: "text" | "counter";
  value: string | number;
}

/**
 * Stores `value` as collaborative text: concurrent `splice`s on it merge character by
 * character instead of one write winning. It reads back as a plain string.
 */
export function text(value: string): string {
  return { [MARK]: "text", value } as unknown as string;
}

/**
 * Stores `value` as a counter: concurrent `increment`s add up instead of one write
 * winning. It reads back as a plain number.
 */
export function counter(value = 0): number {
  return { [MARK]: "counter", value } as unknown as number;
}

import { NexusError } from "./errors.js";

export { NexusError };

function recorderOf(object: unknown, what: string): { recorder: Recorder; path: Path; target: any } {
  const o = object as any;
  if (o === null || typeof o !== "object" || o[RECORDER] === undefined) {
    throw new NexusError(
      "BAD_CHANGE",
      `${what} takes an object or list of the document inside handle.change(d => ...), such as d or d.items`,
    );
  }
  return { recorder: o[RECORDER], path: o[PATH], target: o[TARGET] };
}

/**
 * Edits collaborative text (made with `text(...)`) in place: at `index` removes
 * `deleteCount` and inserts `insert`. Positions count UTF-16 code units, as JavaScript
 * strings, DOM selections (`selectionStart`) and Automerge JS do; a position inside a
 * character of two units (an emoji, say) is refused.
 */
export function splice(object: object, key: string | number, index: number, deleteCount: number, insert = ""): void {
  const { recorder, path, target } = recorderOf(object, "splice");
  const current = target[key];
  if (typeof current !== "string") {
    throw new NexusError("BAD_CHANGE", `splice: ${JSON.stringify([...path, key])} is not text`);
  }
  if (!Number.isInteger(index) || index < 0 || !Number.isInteger(deleteCount) || deleteCount < 0) {
    throw new NexusError("BAD_CHANGE", "splice: index and deleteCount must be whole numbers from 0");
  }
  if (index + deleteCount > current.length) {
    throw new NexusError("BAD_CHANGE", `splice: ${index}+${deleteCount} is past the end of ${JSON.stringify([...path, key])} (${current.length} UTF-16 code units)`);
  }
  if (splitsPair(current, index) || splitsPair(current, index + deleteCount)) {
    throw new NexusError("BAD_CHANGE", `splice: ${index}+${deleteCount} falls inside a character of ${JSON.stringify([...path, key])}`);
  }
  // The engine counts code points.
  const at = Array.from(current.slice(0, index)).length;
  const removed = Array.from(current.slice(index, index + deleteCount)).length;
  recorder.edits.push({ op: "splice", path: [...path, key], index: at, delete: removed, insert });
  target[key] = current.slice(0, index) + insert + current.slice(index + deleteCount);
}

/** Whether UTF-16 position `at` of `text` falls between the two halves of a surrogate pair. */
function splitsPair(text: string, at: number): boolean {
  const before = text.charCodeAt(at - 1);
  const after = text.charCodeAt(at);
  return before >= 0xd800 && before <= 0xdbff && after >= 0xdc00 && after <= 0xdfff;
}

/** Adds `by` to a counter (made with `counter(...)`). */
export function increment(object: object, key: string | number, by = 1): void {
  const { recorder, path, target } = recorderOf(object, "increment");
  if (typeof target[key] !== "number" || !Number.isInteger(by)) {
    throw new NexusError("BAD_CHANGE", `increment: ${JSON.stringify([...path, key])} by ${by} needs a counter and a whole number`);
  }
  recorder.edits.push({ op: "increment", path: [...path, key], by });
  target[key] += by;
}

/** A `text(...)` or `counter(...)` value found inside a literal, by its path in it. */
interface NestedMark {
  at: Path;
  json: Json;
  kind: "text" | "counter";
}

/**
 * Checks a value written into the document and returns it as plain JSON with its kind,
 * and the `text(...)`/`counter(...)` values inside it (written after it, each a `put`
 * with its kind at its own path).
 */
function plain(value: unknown, where: Path): { json: Json; kind?: "text" | "counter"; nested: NestedMark[] } {
  if (value !== null && typeof value === "object" && MARK in (value as object)) {
    const marked = value as unknown as Marked;
    return { json: marked.value, kind: marked[MARK], nested: [] };
  }
  const nested: NestedMark[] = [];
  return { json: toJson(value, where, nested), nested };
}

/** The edits that write `value` at `where` with `op` (a put or an insert). */
function writeEdits(op: "put" | "insert", where: Path, value: unknown): { edits: Edit[]; json: Json } {
  const { json, kind, nested } = plain(value, where);
  const edits: Edit[] = [kind ? { op, path: where, value: json, kind } : { op, path: where, value: json }];
  for (const mark of nested) edits.push({ op: "put", path: mark.at, value: mark.json, kind: mark.kind });
  return { edits, json };
}

function toJson(value: unknown, where: Path, nested: NestedMark[]): Json {
  switch (typeof value) {
    case "string":
    case "boolean":
      return value;
    case "number":
      if (!Number.isFinite(value)) break;
      return value;
    case "object": {
      if (value === null) return null;
      const v = value as any;
      if (v[TARGET] !== undefined) return structuredClone(v[TARGET]);
      if (MARK in v) {
        // Inside a literal: written as plain first, then with its kind by a put of its own.
        const marked = v as Marked;
        nested.push({ at: where, json: marked.value, kind: marked[MARK] });
        return marked.value;
      }
      if (Array.isArray(v)) return v.map((item, i) => toJson(item, [...where, i], nested));
      if (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null) {
        const out: { [key: string]: Json } = {};
        for (const [k, item] of Object.entries(v)) out[k] = toJson(item, [...where, k], nested);
        return out;
      }
      break;
    }
  }
  throw new NexusError(
    "BAD_CHANGE",
    `${JSON.stringify(where)}: ${String(value)} cannot be stored; documents hold objects, arrays, strings, finite numbers, booleans and null`,
  );
}

/**
 * Where a draft object sits: its parent and its key there. A list item's index is looked
 * up when it is needed, so a draft object read before a splice still edits the right item
 * after it.
 */
interface Place {
  target: any;
  parent: Place | null;
  key: string | number;
}

/** The draft of one change: its edits, and one proxy per object of the document. */
interface Recorder {
  edits: Edit[];
  proxies: WeakMap<object, any>;
}

/** The path of `place` from the root now; throws for an object no longer in the draft. */
function pathOf(place: Place): Path {
  const path: Path = [];
  for (let p: Place = place; p.parent !== null; p = p.parent) {
    const parent = p.parent.target;
    const key = Array.isArray(parent) ? parent.indexOf(p.target) : p.key;
    if (key === -1 || parent[key] !== p.target) {
      throw new NexusError("BAD_CHANGE", "this draft object was removed or replaced earlier in the same change; read it again from the draft");
    }
    path.push(key);
  }
  return path.reverse();
}

/** The one draft proxy of `target` (made on first read) within this change. */
function draftOf(target: any, parent: Place | null, key: string | number, recorder: Recorder): any {
  const known = recorder.proxies.get(target);
  if (known !== undefined) return known;
  const made = proxy({ target, parent, key }, recorder);
  recorder.proxies.set(target, made);
  return made;
}

function proxy(place: Place, recorder: Recorder): any {
  const target = place.target;
  const path = () => pathOf(place);
  const child = (key: string | number) => {
    const value = target[key];
    return value !== null && typeof value === "object" ? draftOf(value, place, key, recorder) : value;
  };
  const put = (key: string | number, value: unknown) => {
    const { edits, json } = writeEdits("put", [...path(), key], value);
    recorder.edits.push(...edits);
    target[key] = structuredClone(json);
  };
  if (Array.isArray(target)) {
    const insertAt = (index: number, ...values: unknown[]) => {
      const at = path();
      values.forEach((value, i) => {
        const { edits, json } = writeEdits("insert", [...at, index + i], value);
        recorder.edits.push(...edits);
        target.splice(index + i, 0, structuredClone(json));
      });
      return target.length;
    };
    const deleteAt = (index: number, count = 1) => {
      const at = path();
      const removed = target.slice(index, index + count).map((_: unknown, i: number) => child(index + i));
      for (let i = 0; i < removed.length; i++) recorder.edits.push({ op: "delete", path: [...at, index] });
      target.splice(index, removed.length);
      return removed;
    };
    /** Writes `values` over the list where they differ (what sort, reverse, fill and copyWithin leave). */
    const rewrite = (values: unknown[], self: unknown) => {
      values.forEach((value, i) => {
        const now = child(i);
        if (value !== now) put(i, value);
      });
      return self;
    };
    const relative = (n: number | undefined, otherwise: number) => {
      if (n === undefined) return otherwise;
      const whole = Math.trunc(n) || 0;
      return whole < 0 ? Math.max(target.length + whole, 0) : Math.min(whole, target.length);
    };
    let self: any;
    const items = () => target.map((_: unknown, i: number) => child(i));
    const methods: Record<string, (...args: any[]) => unknown> = {
      push: (...values) => insertAt(target.length, ...values),
      unshift: (...values) => insertAt(0, ...values),
      pop: () => (target.length ? deleteAt(target.length - 1)[0] : undefined),
      shift: () => (target.length ? deleteAt(0)[0] : undefined),
      insertAt,
      deleteAt,
      splice: (start: number, deleteCount?: number, ...values: unknown[]) => {
        const from = relative(start, 0);
        const count = deleteCount === undefined ? target.length - from : Math.max(0, Math.min(Math.trunc(deleteCount) || 0, target.length - from));
        const removed = deleteAt(from, count);
        insertAt(from, ...values);
        return removed;
      },
      sort: (compare?: (a: any, b: any) => number) => rewrite(items().sort(compare), self),
      reverse: () => rewrite(items().reverse(), self),
      fill: (value: unknown, start?: number, end?: number) => {
        const values = items();
        for (let i = relative(start, 0); i < relative(end, target.length); i++) values[i] = value;
        return rewrite(values, self);
      },
      copyWithin: (to: number, start: number, end?: number) => rewrite(items().copyWithin(to, start, end), self),
    };
    self = new Proxy(target, {
      get(t, key, receiver) {
        if (key === PATH) return path();
        if (key === RECORDER) return recorder;
        if (key === TARGET) return t;
        if (typeof key === "string" && Object.prototype.hasOwnProperty.call(methods, key)) return methods[key];
        if (typeof key === "string" && /^\d+$/.test(key)) return child(Number(key));
        // Everything else (indexOf, includes, find, map, iteration, ...) is Array's own,
        // reading items through this proxy: the same draft object for the same item.
        return Reflect.get(t, key, receiver);
      },
      set(t, key, value) {
        if (key === "length") {
          if (typeof value === "number" && value <= t.length) deleteAt(value, t.length - value);
          else throw new NexusError("BAD_CHANGE", "a document list cannot be made longer by setting its length");
          return true;
        }
        if (typeof key !== "string" || !/^\d+$/.test(key)) {
          throw new NexusError("BAD_CHANGE", `a document list takes only indexes, not ${String(key)}`);
        }
        const index = Number(key);
        if (index < t.length) put(index, value);
        else if (index === t.length) insertAt(index, value);
        else throw new NexusError("BAD_CHANGE", `index ${index} is past the end of ${JSON.stringify(path())} (length ${t.length})`);
        return true;
      },
      deleteProperty(t, key) {
        if (typeof key === "string" && /^\d+$/.test(key) && Number(key) < t.length) deleteAt(Number(key));
        return true;
      },
    });
    return self;
  }
  return new Proxy(target, {
    get(t, key, receiver) {
      if (key === PATH) return path();
      if (key === RECORDER) return recorder;
      if (key === TARGET) return t;
      if (typeof key === "string" && Object.prototype.hasOwnProperty.call(t, key)) return child(key);
      return Reflect.get(t, key, receiver);
    },
    set(_t, key, value) {
      if (typeof key !== "string") throw new NexusError("BAD_CHANGE", "document keys are strings");
      if (value === undefined) throw new NexusError("BAD_CHANGE", `${JSON.stringify([...path(), key])}: undefined cannot be stored; use delete`);
      put(key, value);
      return true;
    },
    deleteProperty(t, key) {
      if (typeof key === "string" && Object.prototype.hasOwnProperty.call(t, key)) {
        recorder.edits.push({ op: "delete", path: [...path(), key] });
        delete t[key];
      }
      return true;
    },
  });
}

/**
 * Runs `callback` on a draft of `current` and returns the edits it made (empty when it
 * changed nothing). The draft sees its own writes; `current` is left as it was.
 */
export function recordChange<T>(current: T, callback: (draft: T) => void): Edit[] {
  return recordChangeWithResult(current, callback).edits;
}

/** As `recordChange`, and the draft's value afterwards (what the engine will hold). */
export function recordChangeWithResult<T>(current: T, callback: (draft: T) => void): { edits: Edit[]; result: T } {
  const recorder: Recorder = { edits: [], proxies: new WeakMap() };
  const copy = structuredClone(current);
  const draft = draftOf(copy, null, "", recorder);
  const returned = callback(draft) as unknown;
  if (returned instanceof Promise) {
    throw new NexusError("BAD_CHANGE", "the change callback must be synchronous; await before handle.change, not inside it");
  }
  return { edits: recorder.edits, result: copy };
}

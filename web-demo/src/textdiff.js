// Turning a textarea edit into a collaborative-text splice, and keeping a cursor in
// place when the text changes under it. Indexes here count Unicode code points (what
// `splice` takes); the textarea's selection counts UTF-16 units, converted below.

/** The code points of `s`. */
const chars = (s) => Array.from(s);

/**
 * The one splice that turns `before` into `after`: `{ index, remove, insert }`.
 * `cursor` (code points into `after`, optional) breaks ties in runs of equal
 * characters so the splice lands where the person typed.
 */
export function diff(before, after, cursor) {
  const a = chars(before);
  const b = chars(after);
  let prefix = 0;
  while (prefix < a.length && prefix < b.length && a[prefix] === b[prefix]) prefix++;
  if (cursor !== undefined) prefix = Math.min(prefix, Math.max(0, cursor - Math.max(0, b.length - a.length)));
  let suffix = 0;
  while (
    suffix < a.length - prefix &&
    suffix < b.length - prefix &&
    a[a.length - 1 - suffix] === b[b.length - 1 - suffix]
  ) {
    suffix++;
  }
  return {
    index: prefix,
    remove: a.length - prefix - suffix,
    insert: b.slice(prefix, b.length - suffix).join(""),
  };
}

/** Where code point `cursor` of the old text is after the splice `d`. */
export function mapThroughDiff(cursor, d) {
  if (cursor <= d.index) return cursor;
  const inserted = chars(d.insert).length;
  if (cursor >= d.index + d.remove) return cursor - d.remove + inserted;
  return d.index + inserted;
}

/**
 * Where code point `cursor` is after text patches on one field (`splice` inserts,
 * `del` removes; `path` ends in the index). Returns null when a patch replaces the
 * whole field, so the caller falls back to `diff`.
 */
export function mapThroughPatches(cursor, patches) {
  for (const patch of patches) {
    const at = patch.path[patch.path.length - 1];
    if (typeof at !== "number") return null;
    if (patch.action === "splice") {
      if (at < cursor) cursor += chars(patch.value).length;
    } else if (patch.action === "del") {
      const length = patch.length ?? 1;
      if (at < cursor) cursor -= Math.min(length, cursor - at);
    } else {
      return null;
    }
  }
  return cursor;
}

/** Code points before UTF-16 offset `offset` of `s`. */
export function toCodePoints(s, offset) {
  return chars(s.slice(0, offset)).length;
}

/** UTF-16 offset of code point `index` of `s`. */
export function toUtf16(s, index) {
  return chars(s).slice(0, index).join("").length;
}

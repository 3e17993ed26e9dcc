// Turning a textarea edit into a collaborative-text splice, and keeping a cursor in
// place when the text changes under it. Indexes count UTF-16 code units, as the
// textarea's selection and `splice` do; a splice never cuts a character of two units
// (an emoji) in half.

const isHigh = (code) => code >= 0xd800 && code <= 0xdbff;
const isLow = (code) => code >= 0xdc00 && code <= 0xdfff;

/**
 * The one splice that turns `before` into `after`: `{ index, remove, insert }`.
 * `cursor` (a position in `after`, optional) breaks ties in runs of equal characters
 * so the splice lands where the person typed.
 */
export function diff(before, after, cursor) {
  let prefix = 0;
  while (prefix < before.length && prefix < after.length && before[prefix] === after[prefix]) prefix++;
  if (cursor !== undefined) prefix = Math.min(prefix, Math.max(0, cursor - Math.max(0, after.length - before.length)));
  if (prefix > 0 && isHigh(before.charCodeAt(prefix - 1))) prefix--;
  let suffix = 0;
  while (
    suffix < before.length - prefix &&
    suffix < after.length - prefix &&
    before[before.length - 1 - suffix] === after[after.length - 1 - suffix]
  ) {
    suffix++;
  }
  if (suffix > 0 && isLow(before.charCodeAt(before.length - suffix))) suffix--;
  return {
    index: prefix,
    remove: before.length - prefix - suffix,
    insert: after.slice(prefix, after.length - suffix),
  };
}

/** Where position `cursor` of the old text is after the splice `d`. */
export function mapThroughDiff(cursor, d) {
  if (cursor <= d.index) return cursor;
  if (cursor >= d.index + d.remove) return cursor - d.remove + d.insert.length;
  return d.index + d.insert.length;
}

/**
 * Where position `cursor` is after text patches on one field (`splice` inserts, `del`
 * removes; `path` ends in the index). Returns null when a patch replaces the whole
 * field, so the caller falls back to `diff`.
 */
export function mapThroughPatches(cursor, patches) {
  for (const patch of patches) {
    const at = patch.path[patch.path.length - 1];
    if (typeof at !== "number") return null;
    if (patch.action === "splice") {
      if (at < cursor) cursor += patch.value.length;
    } else if (patch.action === "del") {
      const length = patch.length ?? 1;
      if (at < cursor) cursor -= Math.min(length, cursor - at);
    } else {
      return null;
    }
  }
  return cursor;
}

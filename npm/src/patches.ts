/**
 * Patches: what changed in a document, in the shape `@automerge/automerge` uses, and
 * how a handle brings its copy of the document up to date with them.
 */
import type { Edit, Json, Path } from "./change.js";

/** One change to a document's value; `path` leads from the root to the place changed. */
export type Patch =
  | { action: "put"; path: Path; value: Json; conflict?: boolean }
  | { action: "insert"; path: Path; values: Json[] }
  | { action: "splice"; path: Path; value: string }
  | { action: "del"; path: Path; length?: number }
  | { action: "inc"; path: Path; value: number }
  | { action: "conflict"; path: Path }
  | { action: "mark"; path: Path; marks: { name: string; value: Json; start: number; end: number }[] };

/**
 * Returns `doc` with `patches` applied; objects on the changed paths are copied, the
 * rest is shared with `doc` (which is left as it was). Text positions count UTF-16 code
 * units, as in `@automerge/automerge`'s patches.
 */
export function applyPatches<T>(doc: T, patches: Patch[]): T {
  let root: any = doc;
  for (const patch of patches) {
    if (patch.action === "conflict" || patch.action === "mark") continue;
    root = applyAt(root, patch.path, 0, patch);
  }
  return root as T;
}

function applyAt(node: any, path: Path, depth: number, patch: Patch): any {
  const key = path[depth];
  if (depth < path.length - 1) {
    const copy = Array.isArray(node) ? node.slice() : { ...node };
    copy[key as any] = applyAt(node[key as any], path, depth + 1, patch);
    return copy;
  }
  if (typeof node === "string") {
    // Text positions count UTF-16 code units, as JavaScript strings and Automerge JS do.
    const at = key as number;
    if (patch.action === "splice") return node.slice(0, at) + patch.value + node.slice(at);
    if (patch.action === "del") return node.slice(0, at) + node.slice(at + (patch.length ?? 1));
    return node;
  }
  if (Array.isArray(node)) {
    const copy = node.slice();
    const at = key as number;
    switch (patch.action) {
      case "put":
        copy[at] = patch.value;
        break;
      case "insert":
        copy.splice(at, 0, ...patch.values);
        break;
      case "del":
        copy.splice(at, patch.length ?? 1);
        break;
      case "inc":
        copy[at] = (copy[at] as number) + patch.value;
        break;
    }
    return copy;
  }
  const copy = { ...node };
  switch (patch.action) {
    case "put":
      copy[key as string] = patch.value;
      break;
    case "del":
      delete copy[key as string];
      break;
    case "inc":
      copy[key as string] = copy[key as string] + patch.value;
      break;
  }
  return copy;
}

/**
 * The patches that make of a copy what `edits` make of the engine's document: how a
 * change shows in the handle before the engine has it (text positions count code
 * points on both sides).
 */
export function patchesOfEdits(edits: Edit[]): Patch[] {
  const patches: Patch[] = [];
  for (const edit of edits) {
    switch (edit.op) {
      case "put":
        patches.push({ action: "put", path: edit.path, value: edit.value });
        break;
      case "insert":
        patches.push({ action: "insert", path: edit.path, values: [edit.value] });
        break;
      case "delete":
        patches.push({ action: "del", path: edit.path });
        break;
      case "splice":
        if (edit.delete > 0) patches.push({ action: "del", path: [...edit.path, edit.index], length: edit.delete });
        if (edit.insert !== "") patches.push({ action: "splice", path: [...edit.path, edit.index], value: edit.insert });
        break;
      case "increment":
        patches.push({ action: "inc", path: edit.path, value: edit.by });
        break;
    }
  }
  return patches;
}

/** The value at `path` in `doc`, or undefined. */
function valueAt(doc: unknown, path: Path): unknown {
  let node: any = doc;
  for (const key of path) {
    if (node === null || typeof node !== "object") return undefined;
    node = node[key as any];
  }
  return node;
}

/**
 * Applies the engine's patches (and the engine-format patches of `patchesOfEdits`), whose
 * text positions count Unicode code points, one at a time, and returns them rewritten
 * with UTF-16 positions (what the package hands out), with the document they make.
 */
export function applyEnginePatches<T>(doc: T, patches: Patch[]): { doc: T; patches: Patch[] } {
  let root: any = doc;
  const out: Patch[] = [];
  for (const patch of patches) {
    let converted = patch;
    const last = patch.path.length - 1;
    const text = last >= 0 && typeof patch.path[last] === "number" ? valueAt(root, patch.path.slice(0, last)) : undefined;
    if (typeof text === "string" && (patch.action === "splice" || patch.action === "del")) {
      const chars = Array.from(text);
      const at = patch.path[last] as number;
      const index = chars.slice(0, at).join("").length;
      const path = [...patch.path.slice(0, last), index];
      converted =
        patch.action === "splice"
          ? { action: "splice", path, value: patch.value }
          : { action: "del", path, length: chars.slice(at, at + (patch.length ?? 1)).join("").length };
    }
    out.push(converted);
    if (converted.action !== "conflict" && converted.action !== "mark") root = applyAt(root, converted.path, 0, converted);
  }
  return { doc: root as T, patches: out };
}

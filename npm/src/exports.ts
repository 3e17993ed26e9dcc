/** What both entry points export. */
export { Nexus, Vault, DocHandle } from "./api.js";
export type { OpenOptions, Role, Device, Invite, VaultOffer, Status, NexusEvent, ChangeEvent, ChangeOptions, HandleState, RefuseCode, VaultEvent } from "./api.js";
export { text, counter, splice, increment } from "./change.js";
export { NexusError } from "./errors.js";
export type { NexusErrorCode, WaitOptions } from "./errors.js";
export type { Edit, Path, Json } from "./change.js";
export { applyPatches } from "./patches.js";
export type { Patch } from "./patches.js";

/**
 * Errors: every error the package throws or rejects with is a `NexusError`, whose
 * `code` is one of `NexusErrorCode` (the engine's errors are turned into one on the way
 * out, keeping their code and message).
 */

/** What went wrong, for programs (the message says it for people). */
export type NexusErrorCode =
  | "BAD_ARGUMENT"
  | "BAD_CHANGE"
  | "EDIT"
  | "UNKNOWN_VAULT"
  | "UNKNOWN_DOCUMENT"
  | "NOT_OFFERED"
  | "NOT_ALLOWED"
  | "JOIN"
  | "CONNECT"
  | "NETWORK"
  | "QUOTA_EXCEEDED"
  | "BLOCKED"
  | "STORAGE"
  | "CLOSED"
  | "NOT_READY"
  | "UNAVAILABLE"
  | "ABORTED"
  | "NOT_INITIALIZED"
  | "WASM_LOAD_FAILED"
  /** A fault of the package itself (a bug): please report it with the message. */
  | "INTERNAL";

const CODES: ReadonlySet<string> = new Set<NexusErrorCode>([
  "BAD_ARGUMENT", "BAD_CHANGE", "EDIT", "UNKNOWN_VAULT", "UNKNOWN_DOCUMENT", "NOT_OFFERED",
  "NOT_ALLOWED", "JOIN", "CONNECT", "NETWORK", "QUOTA_EXCEEDED", "BLOCKED", "STORAGE", "CLOSED",
  "NOT_READY", "UNAVAILABLE", "ABORTED", "NOT_INITIALIZED", "WASM_LOAD_FAILED", "INTERNAL",
]);

/** An error of the package, with a `code` from `NexusErrorCode`. */
export class NexusError extends Error {
  readonly code: NexusErrorCode;
  constructor(code: NexusErrorCode, message: string) {
    super(message);
    this.name = "NexusError";
    this.code = code;
  }
}

/** `error` as a `NexusError`: the engine's keep their code; anything else is `INTERNAL`. */
export function asNexusError(error: unknown): NexusError {
  if (error instanceof NexusError) return error;
  const code = (error as { code?: unknown } | null)?.code;
  const message = error instanceof Error ? error.message : String(error);
  return new NexusError(typeof code === "string" && CODES.has(code) ? (code as NexusErrorCode) : "INTERNAL", message);
}

/**
 * `target` with every method's error (thrown, or a rejected promise) turned into a
 * `NexusError`.
 */
export function withNexusErrors<T extends object>(target: T): T {
  return new Proxy(target, {
    get(t, key, receiver) {
      const value = Reflect.get(t, key, receiver);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        try {
          const result = value.apply(t, args);
          return result instanceof Promise ? result.catch((e: unknown) => Promise.reject(asNexusError(e))) : result;
        } catch (e) {
          throw asNexusError(e);
        }
      };
    },
  });
}

/** How long a call may wait, and a signal that stops the wait. */
export interface WaitOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}

/**
 * `work`, or a `NexusError` when `options.timeoutMs` passes first (`onTimeout` makes it)
 * or `options.signal` aborts (`ABORTED`, naming `what`). The work itself is not stopped.
 */
export async function withDeadline<T>(
  work: Promise<T>,
  options: WaitOptions,
  what: string,
  onTimeout: (ms: number) => NexusError,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort: (() => void) | undefined;
  const stop = new Promise<never>((_, reject) => {
    if (options.timeoutMs !== undefined) {
      const ms = options.timeoutMs;
      timer = setTimeout(() => reject(onTimeout(ms)), ms);
    }
    onAbort = () => reject(new NexusError("ABORTED", `${what} was aborted`));
    if (options.signal?.aborted) onAbort();
    options.signal?.addEventListener("abort", onAbort, { once: true });
  });
  try {
    return await Promise.race([work, stop]);
  } finally {
    clearTimeout(timer);
    if (onAbort) options.signal?.removeEventListener("abort", onAbort);
  }
}

// What every benchmark page shares: a clock common to all tabs of the browser, the
// main thread's long tasks, and the shape of the documents the workloads use.

/** Milliseconds since the epoch, with sub-millisecond resolution, comparable across tabs. */
export const clock = () => performance.timeOrigin + performance.now();

/** Long tasks (PerformanceObserver "longtask") since the page loaded, in performance.now() time. */
export const longTasks = [];
const record = (entries) => {
  for (const e of entries) longTasks.push({ start: e.startTime, duration: e.duration });
};
let observer = null;
try {
  observer = new PerformanceObserver((list) => record(list.getEntries()));
  observer.observe({ type: "longtask", buffered: true });
} catch {
  // No long task API: longestTask reports null.
}

/** The long tasks that overlap [t0, t1] (performance.now() times). */
export function tasksBetween(t0, t1) {
  // Entries reach the observer's callback a task later; a long task that just ended
  // would be missed without taking them now.
  if (observer) record(observer.takeRecords());
  const during = longTasks.filter((t) => t.start + t.duration >= t0 && t.start <= t1);
  return {
    longTasks: during.length,
    longestTaskMs: during.length ? Math.max(...during.map((t) => t.duration)) : 0,
    longTaskTotalMs: during.reduce((a, t) => a + t.duration, 0),
  };
}

/** A document of moderate size: `n` keys holding short strings. */
export function moderateDoc(n) {
  const doc = {};
  for (let i = 0; i < n; i++) doc[`key${i}`] = `value number ${i}`;
  return doc;
}

/** A small document of the 10,000-document vault. */
export function smallDoc(i) {
  return { title: `document ${i}`, n: i, done: i % 2 === 0 };
}

/** Resolves with `await check()` once it is truthy (polled every `every` ms), or rejects after `ms`. */
export async function until(check, ms, what, every = 5) {
  const deadline = performance.now() + ms;
  for (;;) {
    let v;
    try {
      v = await check();
    } catch {
      v = undefined;
    }
    if (v) return v;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/**
 * Records when a counter value is first seen by this tab (tab-to-tab workload): the
 * implementation calls `saw(value)` from its change listener; `waitSeen(v)` resolves with
 * the clock() time at which `v` was seen.
 */
export function seenRecorder() {
  const seen = new Map();
  const waiters = new Map();
  return {
    saw(value) {
      if (typeof value !== "number" || seen.has(value)) return;
      const t = clock();
      seen.set(value, t);
      waiters.get(value)?.(t);
      waiters.delete(value);
    },
    waitSeen(value, ms = 10_000) {
      if (seen.has(value)) return Promise.resolve(seen.get(value));
      return new Promise((resolve, reject) => {
        waiters.set(value, resolve);
        setTimeout(() => reject(new Error(`value ${value} not seen in ${ms} ms`)), ms);
      });
    },
  };
}

/** Publishes the page's benchmark interface (what run.mjs calls through page.evaluate). */
export function publish(impl, api) {
  window.bench = { impl, ...api };
  window.benchReady = true;
}

/** `fn` over `items`, `batch` at a time (Infinity: all at once), results in order. */
export async function inBatches(items, batch, fn) {
  if (!(batch < items.length)) return Promise.all(items.map(fn));
  const out = [];
  for (let i = 0; i < items.length; i += batch) out.push(...(await Promise.all(items.slice(i, i + batch).map(fn))));
  return out;
}

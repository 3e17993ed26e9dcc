//! The things the runtimes need from their platform, behind one small interface:
//! spawning a task, sleeping, a steady tick for an event loop and (in a browser) giving
//! the page a turn. Natively these are tokio's (the task runs on the runtime's threads);
//! in a browser a task runs on the page's event loop (`spawn_local`) and a sleep is a
//! `setTimeout`. The native and the browser engine both take their timers from here.

use std::future::Future;
use std::time::Duration;

use futures::FutureExt as _;

/// Runs `task` in the background.
#[cfg(not(target_arch = "wasm32"))]
pub fn spawn(task: impl Future<Output = ()> + Send + 'static) {
    tokio::spawn(task);
}

/// Runs `task` in the background, on the page's event loop.
#[cfg(target_arch = "wasm32")]
pub fn spawn(task: impl Future<Output = ()> + 'static) {
    wasm_bindgen_futures::spawn_local(task);
}

/// Gives the runtime's other tasks a turn.
#[cfg(not(target_arch = "wasm32"))]
pub async fn yield_now() {
    tokio::task::yield_now().await;
}

/// Gives the page (and the other tasks on its event loop) a turn.
#[cfg(target_arch = "wasm32")]
pub async fn yield_now() {
    yield_to_page().await;
}

/// Resolves `duration` after the call (the clock starts now, not when first polled).
#[cfg(not(target_arch = "wasm32"))]
pub fn sleep(duration: Duration) -> impl Future<Output = ()> + Send + 'static {
    tokio::time::sleep(duration)
}

/// Resolves `duration` after the call (the clock starts now, not when first polled).
#[cfg(target_arch = "wasm32")]
pub fn sleep(duration: Duration) -> impl Future<Output = ()> + Send + 'static {
    futures_timer::Delay::new(duration)
}

/// A steady tick for an event loop: [`Ticker::tick`] resolves one `period` after the
/// previous tick was taken. A tick taken late is not made up for, so a busy loop never
/// sees a burst of them. Dropping an unfinished `tick()` loses nothing: the next call
/// waits for the same moment.
pub struct Ticker {
    period: Duration,
    next: futures::future::BoxFuture<'static, ()>,
}

impl Ticker {
    /// A ticker whose first tick comes one `period` from now.
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            next: sleep(period).boxed(),
        }
    }

    /// Resolves at the next tick.
    pub async fn tick(&mut self) {
        (&mut self.next).await;
        self.next = sleep(self.period).boxed();
    }
}

/// Lets the page handle input and paint before the caller goes on: `scheduler.yield()`
/// where the browser has it (Chromium 129+), else a zero-delay timer. A nested
/// `setTimeout(0)` waits at least 4 ms, which adds up over many slices of work.
#[cfg(target_arch = "wasm32")]
pub async fn yield_to_page() {
    use wasm_bindgen::JsCast;
    let scheduler = js_sys::Reflect::get(&js_sys::global(), &"scheduler".into())
        .ok()
        .filter(|s| s.is_object());
    let promise = scheduler.and_then(|scheduler| {
        let yield_fn = js_sys::Reflect::get(&scheduler, &"yield".into()).ok()?;
        let yield_fn = yield_fn.dyn_into::<js_sys::Function>().ok()?;
        yield_fn
            .call0(&scheduler)
            .ok()?
            .dyn_into::<js_sys::Promise>()
            .ok()
    });
    match promise {
        Some(promise) => {
            let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
        }
        None => sleep(Duration::ZERO).await,
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use tokio::time::Instant;

    /// With tokio's clock paused, time moves only to the next timer, so these are exact.
    fn assert_at(start: Instant, ms: u64) {
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(ms) && elapsed < Duration::from_millis(ms + 5),
            "expected {ms} ms, got {elapsed:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn ticks_come_a_period_apart_and_a_given_up_wait_loses_nothing() {
        let start = Instant::now();
        let mut ticker = Ticker::new(Duration::from_millis(100));
        ticker.tick().await;
        assert_at(start, 100);
        // A wait given up halfway (another branch of a select won) keeps the tick's time.
        let given_up = tokio::time::timeout(Duration::from_millis(40), ticker.tick()).await;
        assert!(given_up.is_err());
        assert_at(start, 140);
        ticker.tick().await;
        assert_at(start, 200);
        // A tick taken late comes at once, and is not made up for: the next is a whole
        // period after it.
        tokio::time::sleep(Duration::from_millis(350)).await;
        ticker.tick().await;
        assert_at(start, 550);
        ticker.tick().await;
        assert_at(start, 650);
    }
}

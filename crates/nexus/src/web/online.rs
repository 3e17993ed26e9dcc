//! Whether the browser is online, and hearing when that changes.

use futures::channel::mpsc;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;

use super::runtime::Internal;

/// Listens for the browser's `online` and `offline` events. The closures must live as
/// long as the peer.
pub(super) fn watch_online(
    internal: &mpsc::UnboundedSender<Internal>,
) -> Vec<Closure<dyn FnMut(web_sys::Event)>> {
    let Ok(target) = js_sys::global().dyn_into::<web_sys::EventTarget>() else {
        return Vec::new();
    };
    let mut closures = Vec::new();
    for (name, online) in [("online", true), ("offline", false)] {
        let internal = internal.clone();
        let closure: Closure<dyn FnMut(web_sys::Event)> = Closure::new(move |_: web_sys::Event| {
            let _ = internal.unbounded_send(Internal::Online(online));
        });
        if target
            .add_event_listener_with_callback(name, closure.as_ref().unchecked_ref())
            .is_ok()
        {
            closures.push(closure);
        }
    }
    closures
}

/// What `navigator.onLine` says (true when it cannot be read).
pub(super) fn navigator_online() -> bool {
    let global = js_sys::global();
    if let Some(window) = global.dyn_ref::<web_sys::Window>() {
        return window.navigator().on_line();
    }
    if let Some(worker) = global.dyn_ref::<web_sys::WorkerGlobalScope>() {
        return worker.navigator().on_line();
    }
    true
}

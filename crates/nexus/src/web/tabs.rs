//! Tabs of one browser profile are one device: they share the device key and the
//! IndexedDB database, and each writes with its own Automerge actor. One tab, the leader,
//! holds the network connections; it is chosen with the Web Locks API (the lock is
//! `nexus-leader:<database>`, held until the tab closes or its peer stops, then granted
//! to the next tab waiting). Tabs tell each other what they committed over a
//! `BroadcastChannel` (`nexus:<database>`), so a change made in one tab reaches the
//! others, and the leader's peers, without a network round trip; followers hand the
//! leader what needs the network (dial an address, try an invite).
//!
//! Messages are small JSON strings; anything unreadable on the channel is ignored.

use js_sys::{Function, Promise, Reflect};
use std::collections::{BTreeMap, BTreeSet};

use nexus_core::Touched;
use serde_json::{Value, json};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};

/// What one tab tells the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TabMessage {
    /// These records in IndexedDB changed: read them again.
    Changed(Vec<Touched>),
    /// (To the leader.) Dial this address.
    Connect(String),
    /// (To the leader.) Try this invite code.
    Join(String),
    /// (From the leader.) The devices it is connected to now.
    Peers(Vec<String>),
}

impl TabMessage {
    fn encode(&self) -> String {
        match self {
            TabMessage::Changed(touched) => json!({
                "kind": "changed",
                "vaults": touched.iter().map(encode_touched).collect::<Vec<_>>(),
            }),
            TabMessage::Connect(address) => json!({ "kind": "connect", "address": address }),
            TabMessage::Join(code) => json!({ "kind": "join", "code": code }),
            TabMessage::Peers(peers) => json!({ "kind": "peers", "peers": peers }),
        }
        .to_string()
    }

    fn decode(text: &str) -> Option<Self> {
        let value: Value = serde_json::from_str(text).ok()?;
        let strings = |field: &str| -> Vec<String> {
            value[field]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        match value["kind"].as_str()? {
            // One unreadable entry makes the whole message unreadable: a tab that missed
            // a change would show stale data until its next reload.
            "changed" => Some(TabMessage::Changed(
                value["vaults"]
                    .as_array()?
                    .iter()
                    .map(decode_touched)
                    .collect::<Option<Vec<_>>>()?,
            )),
            "connect" => Some(TabMessage::Connect(value["address"].as_str()?.to_owned())),
            "join" => Some(TabMessage::Join(value["code"].as_str()?.to_owned())),
            "peers" => Some(TabMessage::Peers(strings("peers"))),
            _ => None,
        }
    }
}

fn encode_touched(touched: &Touched) -> Value {
    let changes: serde_json::Map<String, Value> = touched
        .changes
        .iter()
        .map(|(doc, hashes)| {
            let hashes: Vec<String> = hashes.iter().map(ToString::to_string).collect();
            (doc.to_string(), json!(hashes))
        })
        .collect();
    json!({
        "vault": touched.vault.to_string(),
        "membership": touched.membership,
        "whole": touched.whole.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "changes": changes,
    })
}

fn decode_touched(value: &Value) -> Option<Touched> {
    let mut changes = BTreeMap::new();
    for (doc, hashes) in value["changes"].as_object()? {
        let hashes = hashes
            .as_array()?
            .iter()
            .map(|h| h.as_str()?.parse().ok())
            .collect::<Option<BTreeSet<_>>>()?;
        changes.insert(doc.parse().ok()?, hashes);
    }
    Some(Touched {
        vault: value["vault"].as_str()?.parse().ok()?,
        membership: value["membership"].as_bool()?,
        whole: value["whole"]
            .as_array()?
            .iter()
            .map(|d| d.as_str()?.parse().ok())
            .collect::<Option<_>>()?,
        changes,
    })
}

/// This tab's part in the coordination. Dropping it gives up leadership (or stops
/// waiting for it) and leaves the channel.
pub(crate) struct Tabs {
    channel: Option<web_sys::BroadcastChannel>,
    _on_message: Option<Closure<dyn FnMut(web_sys::MessageEvent)>>,
    _on_granted: Option<Closure<dyn FnMut(JsValue) -> JsValue>>,
    release: Option<Function>,
    abort: Option<web_sys::AbortController>,
}

impl Tabs {
    /// Joins the coordination of database `name`. `on_message` hears other tabs;
    /// `on_leader` is called once this tab becomes the leader. Returns `None` for the
    /// lock when the Web Locks API is missing (then this tab leads by itself).
    pub(crate) fn join(
        name: &str,
        on_message: impl Fn(TabMessage) + 'static,
        on_leader: impl Fn() + 'static,
    ) -> (Self, bool) {
        let channel = web_sys::BroadcastChannel::new(&format!("nexus:{name}")).ok();
        let on_message = channel.as_ref().map(|channel| {
            let closure: Closure<dyn FnMut(web_sys::MessageEvent)> =
                Closure::new(move |event: web_sys::MessageEvent| {
                    if let Some(message) = event
                        .data()
                        .as_string()
                        .and_then(|t| TabMessage::decode(&t))
                    {
                        on_message(message);
                    }
                });
            channel.set_onmessage(Some(closure.as_ref().unchecked_ref()));
            closure
        });
        let mut tabs = Self {
            channel,
            _on_message: on_message,
            _on_granted: None,
            release: None,
            abort: None,
        };
        let locks = js_sys::global()
            .dyn_into::<js_sys::Object>()
            .ok()
            .and_then(|global| Reflect::get(&global, &"navigator".into()).ok())
            .and_then(|navigator| Reflect::get(&navigator, &"locks".into()).ok())
            .filter(|locks| !locks.is_undefined() && !locks.is_null());
        let Some(locks) = locks else {
            return (tabs, false);
        };
        let Some(request) = Reflect::get(&locks, &"request".into())
            .ok()
            .and_then(|r| r.dyn_into::<Function>().ok())
        else {
            return (tabs, false);
        };
        // Held while the promise the callback returns is pending: resolved on drop.
        let mut release = None;
        let hold = Promise::new(&mut |resolve, _reject| release = Some(resolve));
        let on_granted: Closure<dyn FnMut(JsValue) -> JsValue> = Closure::new(move |_lock| {
            on_leader();
            hold.clone().into()
        });
        let abort = web_sys::AbortController::new().ok();
        let options = js_sys::Object::new();
        if let Some(abort) = &abort {
            let _ = Reflect::set(&options, &"signal".into(), &abort.signal());
        }
        let requested = request.call3(
            &locks,
            &format!("nexus-leader:{name}").into(),
            &options,
            on_granted.as_ref().unchecked_ref(),
        );
        if let Ok(pending) = requested.and_then(|p| p.dyn_into::<Promise>()) {
            // An aborted wait rejects: nothing to report.
            let ignore: Closure<dyn FnMut(JsValue)> = Closure::new(|_| {});
            let _ = pending.catch(&ignore);
            ignore.forget();
        }
        tabs._on_granted = Some(on_granted);
        tabs.release = release;
        tabs.abort = abort;
        (tabs, true)
    }

    /// Tells the other tabs.
    pub(crate) fn post(&self, message: &TabMessage) {
        if let Some(channel) = &self.channel {
            let _ = channel.post_message(&message.encode().into());
        }
    }
}

impl Drop for Tabs {
    fn drop(&mut self) {
        if let Some(abort) = &self.abort {
            abort.abort();
        }
        if let Some(release) = self.release.take() {
            let _ = release.call0(&JsValue::NULL);
        }
        if let Some(channel) = &self.channel {
            channel.set_onmessage(None);
            channel.close();
        }
    }
}

//! The one event loop of every engine. It waits, at once, for the session streams'
//! news ([`Inbox`]), the target's own events (its swarm, the app's commands, the
//! control socket, the other tabs, the network coming back), a turn for the node's
//! pending work, and the next deadline of the node, the supervisor or the target; what
//! comes is handed to the target, which carries out what the core decides.

use std::future::Future;

use futures::FutureExt;
use nexus_core::peering::Input;

use super::core::{Delivery, Inbox};
use super::until;

/// What a target (native, browser) gives the engine loop. The futures are those of the
/// target's own platform (`Send` natively, not in a browser).
pub(crate) trait Target {
    /// Something on the target's side: a swarm event, a command, an input of its own.
    type Event;

    /// Waits for the target's next event. Must be cancel-safe: the loop drops it when
    /// something else comes first.
    fn next_event(&mut self) -> impl Future<Output = Self::Event>;

    /// Takes in one of the target's events.
    fn on_event(&mut self, event: Self::Event) -> impl Future<Output = ()>;

    /// Hands an input to the supervisor and carries out what follows.
    fn input(&mut self, input: Input) -> impl Future<Output = ()>;

    /// Takes in news from the session streams.
    fn deliver(&mut self, delivery: Delivery) -> impl Future<Output = ()>;

    /// Whether the node has work left for a later turn ([`nexus_core::Node::work`]).
    fn has_work(&self) -> bool;

    /// The next deadline: the node's, the supervisor's, the target's own.
    fn deadline(&self) -> Option<u64>;

    /// A deadline came.
    fn on_deadline(&mut self) -> impl Future<Output = ()>;

    /// Whether the loop is to end now.
    fn stopping(&self) -> bool;
}

/// Runs `target` until it says it is stopping.
pub(crate) async fn run<T: Target>(target: &mut T, inbox: &mut Inbox) {
    while !target.stopping() {
        // The futures borrow the target and the inbox only until one of them is ready.
        let next = {
            let mut wake = std::pin::pin!(crate::rt::sleep(until(target.deadline())).fuse());
            // Pending node work (a big message being checked) runs one slice per turn,
            // between network events and, in a browser, the page's own work.
            let busy = target.has_work();
            let mut work = std::pin::pin!(
                async move {
                    if busy {
                        crate::rt::yield_now().await;
                    } else {
                        std::future::pending::<()>().await;
                    }
                }
                .fuse()
            );
            let mut event = std::pin::pin!(target.next_event().fuse());
            let mut delivery = std::pin::pin!(inbox.next().fuse());
            futures::select! {
                () = work => Next::Work,
                delivery = delivery => match delivery {
                    Some(delivery) => Next::Delivery(delivery),
                    None => Next::Nothing,
                },
                event = event => Next::Event(event),
                () = wake => Next::Deadline,
            }
        };
        match next {
            Next::Work => target.input(Input::Work).await,
            Next::Delivery(delivery) => target.deliver(delivery).await,
            Next::Event(event) => target.on_event(event).await,
            Next::Deadline => target.on_deadline().await,
            Next::Nothing => {}
        }
    }
}

/// What one turn of the loop got. It lives for that turn only, so its size does not
/// matter.
#[allow(clippy::large_enum_variant)]
enum Next<E> {
    Work,
    Delivery(Delivery),
    Event(E),
    Deadline,
    Nothing,
}

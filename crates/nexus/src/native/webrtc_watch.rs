//! Keeps a WebRTC-direct listener usable after a failed incoming connection.
//!
//! The native WebRTC transport (`libp2p-webrtc` 0.10.0-alpha) remembers every source
//! address whose first STUN packet it announced, and forgets it only when that connection
//! comes up. When an incoming attempt fails instead (its handshake stalls until the 10 s
//! timeout, which happens now and then even on loopback), every later attempt from the
//! same address is dropped without a word. Browsers dial from a new port each time and do
//! not notice; a native peer dials from its listening socket, the same address every
//! time, so it could never connect again.
//!
//! The dialing side is stuck the same way: the failed connection is never closed, so
//! the remote address stays bound to it in the dialer's socket too.
//!
//! The remedy is to close the listener and listen again on the same port, which clears
//! that memory. All WebRTC-direct connections of this peer run over that socket, so this
//! is done only while none is up; otherwise the problem is reported and the listener kept.

use std::collections::{HashMap, HashSet};

use libp2p::Multiaddr;
use libp2p::core::ConnectedPoint;
use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;

/// How many times a listener is asked to bind its port again before giving up.
const RELISTEN_ATTEMPTS: u32 = 50;

/// What to do about a failed incoming WebRTC-direct connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Remedy {
    /// Close this listener; it will be opened again on the same address.
    Restart(ListenerId),
    /// Connections are up over the listener's socket; it is kept as it is.
    KeepBusy,
    /// Not a WebRTC-direct listener of ours.
    None,
}

/// The WebRTC-direct listeners and connections of one peer.
#[derive(Debug, Default)]
pub(crate) struct WebRtcWatch {
    /// Listener → the address to listen on again (no certhash, no peer id).
    listeners: HashMap<ListenerId, Multiaddr>,
    /// WebRTC-direct connections that are up, in either direction.
    connections: HashSet<ConnectionId>,
    /// Listeners asked to close, to be opened again once closed.
    closing: HashMap<ListenerId, Multiaddr>,
    /// Addresses to listen on again, with the attempts left.
    reopen: Vec<(Multiaddr, u32)>,
}

impl WebRtcWatch {
    /// A listener reported an address.
    pub(crate) fn on_listen_addr(&mut self, listener: ListenerId, address: &Multiaddr) {
        if is_webrtc_direct(address) {
            self.listeners.insert(listener, bare(address));
        }
    }

    /// A connection came up.
    pub(crate) fn on_established(&mut self, connection: ConnectionId, endpoint: &ConnectedPoint) {
        if is_webrtc_direct(endpoint.get_remote_address()) {
            self.connections.insert(connection);
        }
    }

    /// A connection went down.
    pub(crate) fn on_closed(&mut self, connection: ConnectionId) {
        self.connections.remove(&connection);
    }

    /// An incoming connection on `local_addr` failed before it was up.
    pub(crate) fn on_incoming_failure(&mut self, local_addr: &Multiaddr) -> Remedy {
        if !is_webrtc_direct(local_addr) {
            return Remedy::None;
        }
        let wanted = bare(local_addr);
        let Some((&listener, address)) = self.listeners.iter().find(|(_, a)| **a == wanted) else {
            return Remedy::None;
        };
        if !self.connections.is_empty() {
            return Remedy::KeepBusy;
        }
        self.closing.insert(listener, address.clone());
        self.listeners.remove(&listener);
        Remedy::Restart(listener)
    }

    /// A dial over WebRTC-direct failed. Dials go out from the first listener's socket,
    /// which the failed attempt may leave bound to the remote address in the same way, so
    /// the listeners are restarted under the same rule.
    pub(crate) fn on_dial_failure(&mut self) -> Vec<ListenerId> {
        if !self.connections.is_empty() {
            return Vec::new();
        }
        let listeners: Vec<ListenerId> = self.listeners.keys().copied().collect();
        for listener in &listeners {
            if let Some(address) = self.listeners.remove(listener) {
                self.closing.insert(*listener, address);
            }
        }
        listeners
    }

    /// A listener closed; if it was closed here, its address is queued to open again.
    pub(crate) fn on_listener_closed(&mut self, listener: ListenerId) {
        self.listeners.remove(&listener);
        if let Some(address) = self.closing.remove(&listener) {
            self.reopen.push((address, RELISTEN_ATTEMPTS));
        }
    }

    /// Addresses to try to listen on again now. The socket of the closed listener may
    /// linger for a moment, so a failed attempt goes back with [`Self::retry_later`].
    pub(crate) fn take_reopen(&mut self) -> Vec<(Multiaddr, u32)> {
        std::mem::take(&mut self.reopen)
    }

    /// Queues `address` again after a failed bind; false once the attempts are used up.
    pub(crate) fn retry_later(&mut self, address: Multiaddr, attempts_left: u32) -> bool {
        if attempts_left <= 1 {
            return false;
        }
        self.reopen.push((address, attempts_left - 1));
        true
    }
}

fn is_webrtc_direct(address: &Multiaddr) -> bool {
    address.iter().any(|p| matches!(p, Protocol::WebRTCDirect))
}

/// The address without `/certhash/…` and `/p2p/…`, as `listen_on` takes it.
fn bare(address: &Multiaddr) -> Multiaddr {
    address
        .iter()
        .filter(|p| !matches!(p, Protocol::Certhash(_) | Protocol::P2p(_)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener_addr() -> Multiaddr {
        "/ip4/127.0.0.1/udp/4001/webrtc-direct/certhash/uEiDkkjmURrrSb_vw9dGT3CCYav8ctbcPjp22QaX8U1gm6A"
            .parse()
            .unwrap()
    }

    fn inbound() -> ConnectedPoint {
        ConnectedPoint::Listener {
            local_addr: listener_addr(),
            send_back_addr: "/ip4/127.0.0.1/udp/5000/webrtc-direct".parse().unwrap(),
        }
    }

    #[test]
    fn an_idle_listener_is_restarted_on_the_same_port() {
        let mut watch = WebRtcWatch::default();
        let listener = ListenerId::next();
        watch.on_listen_addr(listener, &listener_addr());
        assert_eq!(
            watch.on_incoming_failure(&listener_addr()),
            Remedy::Restart(listener)
        );
        assert!(watch.take_reopen().is_empty(), "reopened only once closed");
        watch.on_listener_closed(listener);
        let reopen = watch.take_reopen();
        let expected: Multiaddr = "/ip4/127.0.0.1/udp/4001/webrtc-direct".parse().unwrap();
        assert_eq!(reopen, vec![(expected.clone(), RELISTEN_ATTEMPTS)]);
        // A bind that fails is tried again, a bounded number of times.
        assert!(watch.retry_later(expected.clone(), 2));
        let (address, left) = watch.take_reopen().remove(0);
        assert!(!watch.retry_later(address, left));
        assert!(watch.take_reopen().is_empty());
    }

    #[test]
    fn a_busy_listener_is_kept_and_other_transports_are_left_alone() {
        let mut watch = WebRtcWatch::default();
        let listener = ListenerId::next();
        watch.on_listen_addr(listener, &listener_addr());
        let connection = ConnectionId::new_unchecked(7);
        watch.on_established(connection, &inbound());
        assert_eq!(
            watch.on_incoming_failure(&listener_addr()),
            Remedy::KeepBusy
        );
        watch.on_closed(connection);
        let tcp: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
        assert_eq!(watch.on_incoming_failure(&tcp), Remedy::None);
        assert_eq!(
            watch.on_incoming_failure(&listener_addr()),
            Remedy::Restart(listener)
        );
        // A failed dial restarts every WebRTC-direct listener, but only while idle.
        watch.on_listener_closed(listener);
        let second = ListenerId::next();
        watch.on_listen_addr(second, &listener_addr());
        watch.on_established(connection, &inbound());
        assert!(watch.on_dial_failure().is_empty());
        watch.on_closed(connection);
        assert_eq!(watch.on_dial_failure(), vec![second]);
        // Closed by someone else: nothing to reopen.
        let other = ListenerId::next();
        watch.on_listener_closed(other);
        assert_eq!(
            watch.take_reopen().len(),
            1,
            "only the first restart so far"
        );
    }
}

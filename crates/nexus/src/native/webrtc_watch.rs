//! Keeps a WebRTC-direct listener usable after a failed connection attempt.
//!
//! The native WebRTC transport (`libp2p-webrtc` 0.10.0-alpha) remembers every source
//! address whose first STUN packet it announced, and forgets it only when that connection
//! comes up. When an incoming attempt fails instead (its handshake stalls until the 10 s
//! timeout, which happens now and then even on loopback), every later attempt from the
//! same address is dropped without a word. Browsers dial from a new port each time and do
//! not notice; a native peer dials from its listening socket, the same address every
//! time, so it could never connect again. The dialing side is stuck the same way: the
//! failed connection is never closed, so the remote address stays bound to it in the
//! dialer's socket too.
//!
//! The remedy is to close the listener and listen again on the address it was asked for
//! (the same port, so the same address for others), which clears that memory. All
//! WebRTC-direct connections of this peer run over its listeners' sockets, so this is done
//! only while none is up; otherwise the problem is reported and the listener kept.
//! Attempts that started before a restart are not counted against the new listener.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

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
    /// Not about a WebRTC-direct listener of ours, or about one already replaced.
    None,
}

/// The WebRTC-direct listeners and connections of one peer.
#[derive(Debug, Default)]
pub(crate) struct WebRtcWatch {
    /// Listener → the address to listen on again: as asked for (a wildcard IP stays a
    /// wildcard), with the port it got.
    listeners: HashMap<ListenerId, Multiaddr>,
    /// WebRTC-direct connections that are up, in either direction.
    connections: HashSet<ConnectionId>,
    /// Attempts under way, with the restart count when they began.
    attempts: HashMap<ConnectionId, u64>,
    /// Restarts so far.
    restarts: u64,
    /// Listeners asked to close, to be opened again once closed.
    closing: HashMap<ListenerId, Multiaddr>,
    /// Addresses to listen on again, with the attempts left.
    reopen: Vec<(Multiaddr, u32)>,
}

impl WebRtcWatch {
    /// This peer asked to listen on `address`.
    pub(crate) fn on_listen(&mut self, listener: ListenerId, address: &Multiaddr) {
        if is_webrtc_direct(address) {
            self.listeners.insert(listener, bare(address));
        }
    }

    /// A listener reported an address; a port asked for as 0 is filled in from it.
    pub(crate) fn on_listen_addr(&mut self, listener: ListenerId, address: &Multiaddr) {
        let Some(asked) = self.listeners.get_mut(&listener) else {
            return;
        };
        if let (Some((_, 0)), Some((_, port))) = (socket_of(asked), socket_of(address)) {
            *asked = asked
                .iter()
                .map(|p| match p {
                    Protocol::Udp(0) => Protocol::Udp(port),
                    other => other,
                })
                .collect();
        }
    }

    /// A connection attempt began (incoming or a dial).
    pub(crate) fn on_attempt(&mut self, connection: ConnectionId) {
        self.attempts.insert(connection, self.restarts);
    }

    /// A connection came up.
    pub(crate) fn on_established(&mut self, connection: ConnectionId, endpoint: &ConnectedPoint) {
        self.attempts.remove(&connection);
        if is_webrtc_direct(endpoint.get_remote_address()) {
            self.connections.insert(connection);
        }
    }

    /// A connection went down.
    pub(crate) fn on_closed(&mut self, connection: ConnectionId) {
        self.connections.remove(&connection);
    }

    /// Whether a failed attempt began before the latest restart (so it says nothing
    /// about the listener now open).
    fn is_stale(&mut self, connection: ConnectionId) -> bool {
        self.attempts
            .remove(&connection)
            .is_some_and(|began| began < self.restarts)
    }

    /// An incoming connection on `local_addr` failed before it was up.
    pub(crate) fn on_incoming_failure(
        &mut self,
        connection: ConnectionId,
        local_addr: &Multiaddr,
    ) -> Remedy {
        if self.is_stale(connection) || !is_webrtc_direct(local_addr) {
            return Remedy::None;
        }
        let Some(failed) = socket_of(local_addr) else {
            return Remedy::None;
        };
        let listener = self.listeners.iter().find_map(|(id, asked)| {
            socket_of(asked)
                .filter(|asked| same_socket(*asked, failed))
                .map(|_| *id)
        });
        let Some(listener) = listener else {
            return Remedy::None;
        };
        if !self.connections.is_empty() {
            return Remedy::KeepBusy;
        }
        self.restart(vec![listener]);
        Remedy::Restart(listener)
    }

    /// A dial over WebRTC-direct failed in its handshake. Dials go out from a
    /// listener's socket, which the failed attempt may leave bound to the remote address
    /// in the same way, so the listeners are restarted under the same rule.
    pub(crate) fn on_dial_failure(&mut self, connection: ConnectionId) -> Vec<ListenerId> {
        if self.is_stale(connection) || !self.connections.is_empty() {
            return Vec::new();
        }
        let listeners: Vec<ListenerId> = self.listeners.keys().copied().collect();
        self.restart(listeners.clone());
        listeners
    }

    fn restart(&mut self, listeners: Vec<ListenerId>) {
        self.restarts += 1;
        for listener in listeners {
            if let Some(address) = self.listeners.remove(&listener) {
                self.closing.insert(listener, address);
            }
        }
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

/// A WebRTC-direct address of this host (not a circuit through a relay).
pub(crate) fn is_webrtc_direct(address: &Multiaddr) -> bool {
    address.iter().any(|p| matches!(p, Protocol::WebRTCDirect))
        && !address.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// The IP and UDP port of an address.
fn socket_of(address: &Multiaddr) -> Option<(IpAddr, u16)> {
    let mut ip = None;
    let mut port = None;
    for p in address.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(IpAddr::V4(a)),
            Protocol::Ip6(a) => ip = Some(IpAddr::V6(a)),
            Protocol::Udp(p) => port = Some(p),
            _ => {}
        }
    }
    Some((ip?, port?))
}

/// Whether a socket bound as `asked` is the one at `seen` (a wildcard IP matches any of
/// its family).
fn same_socket(asked: (IpAddr, u16), seen: (IpAddr, u16)) -> bool {
    asked.1 == seen.1
        && asked.0.is_ipv4() == seen.0.is_ipv4()
        && (asked.0 == seen.0 || asked.0.is_unspecified() || seen.0.is_unspecified())
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

    const CERTHASH: &str = "certhash/uEiDkkjmURrrSb_vw9dGT3CCYav8ctbcPjp22QaX8U1gm6A";

    fn addr(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    fn inbound() -> ConnectedPoint {
        ConnectedPoint::Listener {
            local_addr: addr(&format!("/ip4/127.0.0.1/udp/4001/webrtc-direct/{CERTHASH}")),
            send_back_addr: addr("/ip4/127.0.0.1/udp/5000/webrtc-direct"),
        }
    }

    #[test]
    fn an_idle_wildcard_listener_is_restarted_on_its_port_and_stays_a_wildcard() {
        let mut watch = WebRtcWatch::default();
        let listener = ListenerId::next();
        watch.on_listen(listener, &addr("/ip4/0.0.0.0/udp/0/webrtc-direct"));
        // One address per interface; the port is filled in, the IP stays a wildcard.
        for ip in ["127.0.0.1", "192.168.1.20"] {
            let seen = format!("/ip4/{ip}/udp/4001/webrtc-direct/{CERTHASH}");
            watch.on_listen_addr(listener, &addr(&seen));
        }
        let attempt = ConnectionId::new_unchecked(1);
        watch.on_attempt(attempt);
        let bound = addr(&format!("/ip4/0.0.0.0/udp/4001/webrtc-direct/{CERTHASH}"));
        assert_eq!(
            watch.on_incoming_failure(attempt, &bound),
            Remedy::Restart(listener)
        );
        assert!(watch.take_reopen().is_empty(), "reopened only once closed");
        watch.on_listener_closed(listener);
        let wildcard = addr("/ip4/0.0.0.0/udp/4001/webrtc-direct");
        assert_eq!(
            watch.take_reopen(),
            vec![(wildcard.clone(), RELISTEN_ATTEMPTS)]
        );
        // A bind that fails is tried again, a bounded number of times.
        assert!(watch.retry_later(wildcard.clone(), 2));
        let (address, left) = watch.take_reopen().remove(0);
        assert!(!watch.retry_later(address, left));
        assert!(watch.take_reopen().is_empty());
    }

    #[test]
    fn busy_listeners_stale_attempts_circuits_and_other_transports_restart_nothing() {
        let mut watch = WebRtcWatch::default();
        let listener = ListenerId::next();
        let asked = addr("/ip4/127.0.0.1/udp/4001/webrtc-direct");
        watch.on_listen(listener, &asked);
        let local = addr(&format!("/ip4/127.0.0.1/udp/4001/webrtc-direct/{CERTHASH}"));
        let up = ConnectionId::new_unchecked(7);
        watch.on_established(up, &inbound());
        let attempt = ConnectionId::new_unchecked(8);
        watch.on_attempt(attempt);
        assert_eq!(watch.on_incoming_failure(attempt, &local), Remedy::KeepBusy);
        assert!(watch.on_dial_failure(attempt).is_empty());
        watch.on_closed(up);
        let tcp = addr("/ip4/127.0.0.1/tcp/4001");
        assert_eq!(watch.on_incoming_failure(attempt, &tcp), Remedy::None);
        let circuit = addr(&format!(
            "/ip4/127.0.0.1/udp/4001/webrtc-direct/{CERTHASH}/p2p/12D3KooWD3KQ4nFcSkWDv1KEXvBtKGRWfBP1yco6TrD4aeoiuNZd/p2p-circuit"
        ));
        assert!(!is_webrtc_direct(&circuit));
        // Two attempts under way; the first failure restarts, the second began before
        // that restart and is ignored.
        let (first, second) = (
            ConnectionId::new_unchecked(9),
            ConnectionId::new_unchecked(10),
        );
        watch.on_attempt(first);
        watch.on_attempt(second);
        assert_eq!(watch.on_dial_failure(first), vec![listener]);
        watch.on_listener_closed(listener);
        let reopened = ListenerId::next();
        let (address, _) = watch.take_reopen().remove(0);
        assert_eq!(address, asked);
        watch.on_listen(reopened, &address);
        assert_eq!(watch.on_incoming_failure(second, &local), Remedy::None);
        // Closed by someone else: nothing to reopen.
        watch.on_listener_closed(ListenerId::next());
        assert!(watch.take_reopen().is_empty());
    }
}

//! What the native runtime does with its swarm: dials, connection and listener events,
//! mDNS, identify and rendezvous, relay slots, WebRTC-direct listeners that restart.

use super::*;

impl NativeEngine {
    /// Dials `address` (remembered in the peer table; a circuit through its relay first).
    pub(super) fn dial_address(&mut self, address: Multiaddr) {
        self.input(Input::Dial {
            address: address.to_string(),
        });
    }

    pub(super) fn on_swarm_event(&mut self, event: SwarmEvent<PeerBehaviourEvent>) {
        match &event {
            SwarmEvent::ConnectionEstablished {
                connection_id,
                endpoint,
                ..
            } => self.webrtc.on_established(*connection_id, endpoint),
            SwarmEvent::ConnectionClosed { connection_id, .. } => {
                self.webrtc.on_closed(*connection_id)
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                ..
            } => {
                self.listening.retain(|a| !addresses.contains(a));
                self.webrtc.on_listener_closed(*listener_id)
            }
            SwarmEvent::IncomingConnection { connection_id, .. }
            | SwarmEvent::Dialing { connection_id, .. } => self.webrtc.on_attempt(*connection_id),
            // Only a WebRTC-direct handshake that went wrong (not an address the transport
            // refused outright) can leave a socket stuck.
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error: DialError::Transport(attempts),
                ..
            } if attempts.iter().any(|(address, error)| {
                is_webrtc_direct(address) && matches!(error, libp2p::TransportError::Other(_))
            }) =>
            {
                for listener in self.webrtc.on_dial_failure(*connection_id) {
                    self.swarm.remove_listener(listener);
                }
            }
            _ => {}
        }
        if let Some(news) = self.core.connection_news(&mut self.swarm, &event) {
            let _ = self.carry_out(news.actions);
            for event in news.events {
                self.emit(event);
            }
            match news.connection {
                Some(Connection::Up { peer, .. }) => self.on_connected(peer),
                Some(Connection::Down { peer }) => {
                    // A relay's reservation ends with the connection; ask again on
                    // reconnect.
                    self.reservations.lost(&peer);
                }
                Some(Connection::Failed { .. }) | None => {}
            }
            return;
        }
        match event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                self.webrtc.on_listen_addr(listener_id, &address);
                let relayed = address.iter().any(|p| matches!(p, Protocol::P2pCircuit));
                let full = with_local_peer(&address, *self.swarm.local_peer_id());
                if relayed {
                    // A reservation at a relay: others reach us at this address, so it is
                    // what we register at the relay's rendezvous point.
                    self.swarm.add_external_address(address.clone());
                    if let Some(relay) = self.reservations.confirmed(&address) {
                        self.register_at(relay);
                    }
                }
                self.listening.push(address);
                self.emit(EngineEvent::Listening(full));
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listening.retain(|a| *a != address);
            }
            SwarmEvent::IncomingConnectionError {
                connection_id,
                local_addr,
                send_back_addr,
                error,
                ..
            } => {
                self.emit(EngineEvent::Problem(format!(
                    "incoming connection from {send_back_addr} on {local_addr} failed: {error}"
                )));
                match self.webrtc.on_incoming_failure(connection_id, &local_addr) {
                    Remedy::Restart(listener) => {
                        self.swarm.remove_listener(listener);
                    }
                    Remedy::KeepBusy => self.emit(EngineEvent::Problem(format!(
                        "{send_back_addr} may not reach {local_addr} again until no \
                         WebRTC-direct connection is up and the listener restarts"
                    ))),
                    Remedy::None => {}
                }
            }
            SwarmEvent::Behaviour(PeerBehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                let addresses: Vec<Multiaddr> = info
                    .listen_addrs
                    .into_iter()
                    .filter(|a| !a.iter().any(|p| matches!(p, Protocol::P2pCircuit)))
                    .take(nexus_core::peers::MAX_ADDRESSES)
                    .collect();
                for address in &addresses {
                    self.swarm.add_peer_address(peer_id, address.clone());
                }
                if let Some(device) = device_of(&peer_id) {
                    let addresses = addresses.iter().map(Multiaddr::to_string).collect();
                    self.input(Input::Identified { device, addresses });
                }
            }
            SwarmEvent::Behaviour(PeerBehaviourEvent::Rendezvous(event)) => {
                if let Some(problem) = self
                    .core
                    .on_rendezvous_event(&mut self.swarm, event, |_| true)
                {
                    self.emit(problem);
                }
            }
            SwarmEvent::Behaviour(PeerBehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                // One input per device with every address it announced: the supervisor
                // dials it, and again after failures, a few times.
                let mut by_device: std::collections::BTreeMap<DeviceId, Vec<String>> =
                    std::collections::BTreeMap::new();
                for (peer, address) in found {
                    if peer == *self.swarm.local_peer_id() {
                        continue;
                    }
                    self.swarm.add_peer_address(peer, address.clone());
                    if let Some(device) = device_of(&peer) {
                        by_device
                            .entry(device)
                            .or_default()
                            .push(address.to_string());
                    }
                }
                for (device, addresses) in by_device {
                    self.input(Input::Discovered { device, addresses });
                }
            }
            _ => {}
        }
    }

    // ---- rendezvous and listeners ---------------------------------------------------------

    /// A connection came up: at a relay this device uses, a slot is reserved, the
    /// vaults' members are looked up and the mailbox is read soon.
    pub(super) fn on_connected(&mut self, peer: PeerId) {
        if let Some(address) = self.relays.get(&peer).cloned()
            && self.reservations.ask(peer)
        {
            if let Err(e) = self.swarm.listen_on(address.with(Protocol::P2pCircuit)) {
                self.emit(EngineEvent::Problem(format!(
                    "reserving a slot at relay {peer}: {e}"
                )));
            }
            self.discover_at(peer);
            self.mailboxes.fetch_soon();
        }
    }

    /// Registers every vault's rendezvous name at `relay`.
    pub(super) fn register_at(&mut self, relay: PeerId) {
        if let Err(problem) = self
            .core
            .register_at(&mut self.swarm.behaviour_mut().rendezvous, relay)
        {
            self.emit(EngineEvent::Problem(problem));
        }
    }

    pub(super) fn discover_at(&mut self, relay: PeerId) {
        self.core
            .discover_at(&mut self.swarm.behaviour_mut().rendezvous, relay);
    }

    pub(super) fn rendezvous_round(&mut self) {
        let problems = self.core.rendezvous_round(
            &mut self.swarm.behaviour_mut().rendezvous,
            self.reservations.registrable(),
        );
        for problem in problems {
            self.emit(EngineEvent::Problem(problem));
        }
    }

    /// Listens again on WebRTC-direct addresses closed by [`WebRtcWatch`].
    pub(super) fn reopen_webrtc_listeners(&mut self) {
        for (address, attempts_left) in self.webrtc.take_reopen() {
            match self.swarm.listen_on(address.clone()) {
                Ok(listener) => self.webrtc.on_listen(listener, &address),
                Err(e) => {
                    if !self.webrtc.retry_later(address.clone(), attempts_left) {
                        self.emit(EngineEvent::Problem(format!(
                            "cannot listen on {address} again: {e}"
                        )));
                    }
                }
            }
        }
    }
}

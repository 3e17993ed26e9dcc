//! What the browser runtime does with its swarm: connection events (pending `connect`s,
//! where it dialed), relays it uses (a slot, rendezvous), members found at a relay.

use super::*;

impl WebEngine {
    pub(super) async fn on_swarm_event(&mut self, event: SwarmEvent<WebBehaviourEvent>) {
        if let Some(news) = self.core.connection_news(&mut self.swarm, &event) {
            let _ = self.carry_out(news.actions).await;
            for event in news.events {
                self.emit(event);
            }
            if let Some(connection) = news.connection {
                self.on_connection(connection);
            }
            return;
        }
        match event {
            SwarmEvent::NewListenAddr { address, .. }
                if address.iter().any(|p| matches!(p, Protocol::P2pCircuit)) =>
            {
                self.swarm.add_external_address(address.clone());
                if let Some(relay) = self.reservations.confirmed(&address) {
                    self.register_at(relay);
                }
                let full = with_local_peer(&address, *self.swarm.local_peer_id());
                self.reachable_at.push(full.clone());
                self.emit(EngineEvent::Reachable(full));
                if let Some(relay) = relay_of_circuit(&address) {
                    self.settle_connects(relay, true);
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.reachable_at
                    .retain(|a| !a.to_string().starts_with(&address.to_string()));
            }
            SwarmEvent::Behaviour(WebBehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                let Some(device) = device_of(&peer_id) else {
                    return;
                };
                let is_relay = info
                    .protocols
                    .iter()
                    .any(|p| p.as_ref() == RELAY_HOP_PROTOCOL);
                if is_relay {
                    if !self.core.peering.is_relay(&device) {
                        self.input(Input::Relay { device }).await;
                    }
                    // Again on every connection: the slot goes with the last one.
                    self.use_relay(peer_id);
                }
                self.settle_connects(peer_id, is_relay);
                // Only what a browser can dial is worth remembering.
                let addresses = info
                    .listen_addrs
                    .iter()
                    .filter(|a| browser_dialable(a))
                    .map(Multiaddr::to_string)
                    .collect();
                self.input(Input::Identified { device, addresses }).await;
            }
            SwarmEvent::Behaviour(WebBehaviourEvent::Rendezvous(event)) => {
                // A browser can only dial through circuits and browser transports.
                let circuit = |a: &Multiaddr| a.iter().any(|p| matches!(p, Protocol::P2pCircuit));
                if let Some(problem) =
                    self.core
                        .on_rendezvous_event(&mut self.swarm, event, circuit)
                {
                    self.emit(problem);
                }
            }
            _ => {}
        }
    }

    /// The browser's part of a connection event: where it dialed (a relay's slot is
    /// reserved at that address), the pending `connect`s it answers, the other tabs.
    pub(super) fn on_connection(&mut self, connection: Connection) {
        match connection {
            Connection::Up {
                peer,
                device,
                connection,
                first,
                dialed,
            } => {
                if let Some(dialed) = dialed
                    && !dialed.iter().any(|p| matches!(p, Protocol::P2pCircuit))
                {
                    self.dialled.insert(peer, dialed);
                }
                if first {
                    self.tell_tabs_peers();
                }
                // Answered once identify tells whether the peer is a relay: an invite made
                // right after `connect` to a relay must carry this browser's circuit
                // address, so `connect` waits for the slot too.
                for connect in &mut self.connects {
                    let ours = match (connect.peer, connect.connection) {
                        (Some(p), _) => p == peer,
                        (None, Some(c)) => c == connection,
                        (None, None) => true,
                    };
                    if ours && connect.up.is_none() {
                        connect.up = Some((peer, device));
                    }
                }
                if self.core.peering.is_relay(&device) {
                    self.settle_connects(peer, true);
                }
            }
            Connection::Down { peer } => {
                self.fail_connects(peer, "the connection closed before the relay gave a slot");
                self.tell_tabs_peers();
                if self.reservations.lost(&peer) {
                    let prefix = format!("/p2p/{peer}/p2p-circuit");
                    self.reachable_at
                        .retain(|a| !a.to_string().contains(&prefix));
                }
            }
            Connection::Failed {
                peer,
                connection,
                reason,
            } => {
                let connects = std::mem::take(&mut self.connects);
                for connect in connects {
                    if connect.connection == Some(connection)
                        || (peer.is_some() && connect.peer == peer)
                    {
                        let _ = connect.reply.send(Err(WebError::Connect {
                            address: connect.address.to_string(),
                            reason: reason.clone(),
                        }));
                    } else {
                        self.connects.push(connect);
                    }
                }
            }
        }
    }

    /// Answers the `connect`s whose connection to `peer` is up: at once for a peer that is
    /// not a relay, and for a relay once this browser holds a slot there.
    pub(super) fn settle_connects(&mut self, peer: PeerId, relay: bool) {
        let slot = self.has_slot_at(&peer);
        let connects = std::mem::take(&mut self.connects);
        for connect in connects {
            match connect.up {
                Some((p, device)) if p == peer && (!relay || slot) => {
                    let _ = connect.reply.send(Ok(device));
                }
                _ => self.connects.push(connect),
            }
        }
    }

    /// Fails the `connect`s still waiting on `peer`'s connection.
    fn fail_connects(&mut self, peer: PeerId, reason: &str) {
        let connects = std::mem::take(&mut self.connects);
        for connect in connects {
            if connect.up.is_some_and(|(p, _)| p == peer) {
                let _ = connect.reply.send(Err(WebError::Connect {
                    address: connect.address.to_string(),
                    reason: reason.to_owned(),
                }));
            } else {
                self.connects.push(connect);
            }
        }
    }

    /// Whether this browser is reachable through a circuit at `relay`.
    fn has_slot_at(&self, relay: &PeerId) -> bool {
        let at = format!("/p2p/{relay}/p2p-circuit");
        self.reachable_at
            .iter()
            .any(|a| a.to_string().contains(&at))
    }

    /// Reserves a slot at a relay this browser dialled, and meets members there.
    pub(super) fn use_relay(&mut self, relay: PeerId) {
        if let Some(address) = self.dialled.get(&relay).cloned()
            && self.reservations.ask(relay)
        {
            let circuit = address
                .with(Protocol::P2p(relay))
                .with(Protocol::P2pCircuit);
            if let Err(e) = self.swarm.listen_on(circuit) {
                self.reservations.lost(&relay);
                self.emit(EngineEvent::Problem(format!(
                    "reserving a slot at relay {relay}: {e}"
                )));
            }
        }
        self.core
            .discover_at(&mut self.swarm.behaviour_mut().rendezvous, relay);
    }

    pub(super) fn register_at(&mut self, relay: PeerId) {
        if let Err(problem) = self
            .core
            .register_at(&mut self.swarm.behaviour_mut().rendezvous, relay)
        {
            self.emit(EngineEvent::Problem(problem));
        }
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

    pub(super) fn expire_connects(&mut self, now: u64) {
        let (expired, pending): (Vec<_>, Vec<_>) = std::mem::take(&mut self.connects)
            .into_iter()
            .partition(|c| c.deadline_ms <= now);
        self.connects = pending;
        let seconds = WEB_CONNECT_TIMEOUT.as_secs();
        for connect in expired {
            let reason = match connect.up {
                // Identify never said: connected all the same.
                Some((_, device)) if !self.core.peering.is_relay(&device) => {
                    let _ = connect.reply.send(Ok(device));
                    continue;
                }
                Some(_) => format!(
                    "connected, but the relay gave this browser no slot within {seconds} s: \
                     no one can reach it there (an invite made now would not work)"
                ),
                None => format!("no connection within {seconds} s"),
            };
            let _ = connect.reply.send(Err(WebError::Connect {
                address: connect.address.to_string(),
                reason,
            }));
        }
    }
}

/// The relay of a circuit address (`…/p2p/<relay>/p2p-circuit…`).
fn relay_of_circuit(address: &Multiaddr) -> Option<PeerId> {
    let mut relay = None;
    for protocol in address.iter() {
        match protocol {
            Protocol::P2p(peer) => relay = Some(peer),
            Protocol::P2pCircuit => return relay,
            _ => {}
        }
    }
    None
}

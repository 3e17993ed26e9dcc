//! The page and the other tabs of the profile: online/offline, leadership, invites a
//! follower tab hands over, and what other tabs committed, read back from IndexedDB.

use super::*;

impl WebEngine {
    pub(super) async fn on_internal(&mut self, internal: Internal) {
        match internal {
            Internal::Leader => self.become_leader().await,
            // Taken in at once: another tab's edit shows here as soon as IndexedDB has it.
            Internal::Tab(TabMessage::Changed(touched)) => {
                self.from_other_tabs.extend(touched);
                self.read_other_tabs_changes().await;
            }
            Internal::Tab(TabMessage::Peers(peers)) => {
                self.leader_peers = peers.iter().filter_map(|p| p.parse().ok()).collect();
            }
            Internal::Tab(TabMessage::Connect(address)) if self.leader => {
                self.input(Input::Dial { address }).await;
            }
            Internal::Tab(TabMessage::Join(code)) if self.leader => match code.parse() {
                Ok(code) => self.start_join(code, None).await,
                Err(e) => self.emit(EngineEvent::Problem(format!(
                    "another tab's invite code is unreadable: {e}"
                ))),
            },
            Internal::Tab(_) => {}
            Internal::Online(online) => {
                self.emit(EngineEvent::Online(online));
                // Back online: every known peer is tried now, not after its backoff.
                self.input(Input::Online(online)).await;
            }
        }
    }

    /// This tab got the leader lock: it takes over the connections, starting with every
    /// peer the profile knows (the previous leader's records included).
    pub(super) async fn become_leader(&mut self) {
        self.leader = true;
        self.leader_peers.clear();
        match self.store.reload_peers().await {
            Ok(()) => match PeerRecord::load_all(self.store.cache()) {
                Ok((records, _)) => self.input(Input::PeerRecords(records)).await,
                Err(e) => self.emit(EngineEvent::Problem(format!("reading peer records: {e}"))),
            },
            Err(e) => self.emit(EngineEvent::Problem(format!("reading peer records: {e}"))),
        }
        // Invites a follower was waiting on are tried here now.
        self.input(Input::HoldConnections).await;
        self.emit(EngineEvent::Leader);
        self.tell_tabs_peers();
    }

    /// Starts trying an invite (the leader dials its addresses; a follower asks the
    /// leader). `reply` hears the outcome.
    pub(crate) async fn start_join(
        &mut self,
        code: InviteCode,
        reply: Option<oneshot::Sender<Result<VaultId, WebError>>>,
    ) {
        if !self.leader
            && self.core.node.vault(&code.vault).is_none()
            && let Some(tabs) = &self.tabs
        {
            tabs.post(&TabMessage::Join(code.to_string()));
        }
        let id = JoinId(self.next_join);
        self.next_join += 1;
        self.joins.insert(id, reply);
        self.input(Input::Join { id, code }).await;
    }

    pub(super) fn tell_tabs_peers(&self) {
        if self.leader
            && let Some(tabs) = &self.tabs
        {
            let peers = self
                .core
                .peering
                .connected()
                .map(|d| d.to_string())
                .collect();
            tabs.post(&TabMessage::Peers(peers));
        }
    }

    /// Reads back what other tabs committed (only the records their batches touched,
    /// widened where this tab lacks what they build on) and takes it in: new changes are
    /// offered to peers at once, the app hears of each document that moved.
    pub(super) async fn read_other_tabs_changes(&mut self) {
        let pending = std::mem::take(&mut self.from_other_tabs);
        for (i, touched) in pending.iter().enumerate() {
            let read = self.core.node.what_to_read(touched);
            if let Err(e) = self.take_in_from_store(&read).await {
                // Kept, as whole vaults, for the next try: a missed commit would leave
                // this tab behind until it reloads.
                self.tab_read_failures += 1;
                self.emit(EngineEvent::Problem(format!(
                    "reading another tab's changes (attempt {}): {e}",
                    self.tab_read_failures
                )));
                if self.tab_read_failures < MAX_TAB_READ_FAILURES {
                    let rest = pending[i..].iter().map(|t| Touched {
                        membership: true,
                        ..t.clone()
                    });
                    self.from_other_tabs.splice(0..0, rest);
                }
                return;
            }
            // A change whose parents this tab never read (a message it missed) waits
            // for them: its document is read again whole.
            let again = self.core.node.what_to_read(&Touched {
                membership: false,
                whole: BTreeSet::new(),
                ..read
            });
            if !again.whole.is_empty() {
                let again = Touched {
                    changes: BTreeMap::new(),
                    ..again
                };
                if let Err(e) = self.take_in_from_store(&again).await {
                    self.emit(EngineEvent::Problem(format!(
                        "reading another tab's documents again: {e}"
                    )));
                }
            }
        }
        self.tab_read_failures = 0;
    }

    /// Reads `read` back from IndexedDB and takes it in.
    pub(super) async fn take_in_from_store(&mut self, read: &Touched) -> Result<(), String> {
        self.store
            .reload_touched(std::slice::from_ref(read))
            .await
            .map_err(|e| e.to_string())?;
        let out = self
            .core
            .node
            .take_in_stored(self.store.cache(), read, now_ms())
            .map_err(|e| format!("vault {}: {e}", read.vault))?;
        let _ = self.take_output(out).await;
        Ok(())
    }
}

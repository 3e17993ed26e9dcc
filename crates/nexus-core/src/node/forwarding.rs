//! What news from one place means for the vault's other sessions: new membership entries
//! pushed to each of them (and peers that are no longer members closed), new document
//! changes offered to each ready one. A device between two groups bridges them this way.

use super::session::Phase;
use super::{Event, Node, Output, SessionId};
use crate::ids::{DocId, VaultId};
use crate::membership::SignedEntry;
use crate::protocol::Message;
use crate::storage::Batch;

impl Node {
    /// Pushes new membership entries to every ready session of the vault and closes the
    /// sessions of peers that are no longer members.
    pub(super) fn after_membership_change(
        &mut self,
        vault: VaultId,
        batch: Batch,
        except: Option<SessionId>,
        now_ms: u64,
    ) -> Output {
        let mut out = Output {
            batch,
            ..Output::default()
        };
        out.events.push(Event::MembershipChanged { vault });
        let key = self.key.clone();
        let Some(v) = self.vaults.get_mut(&vault) else {
            return out;
        };
        // An admin keeps the vault key current; a failure leaves it to the next change.
        // A key entry made now is news to every session, the one that brought the change
        // included.
        let mut key_entry = false;
        if let Ok(batch) = v.maintain_keys(&key, now_ms)
            && !batch.is_empty()
        {
            out.batch.extend(batch);
            key_entry = true;
        }
        let v = &*v;
        let membership = v.membership().clone();
        let entries: Vec<SignedEntry> = v.log().entries().into_iter().cloned().collect();
        let ids: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.vault == Some(vault) && s.phase != Phase::Hello)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let Some(session) = self.sessions.get_mut(&id) else {
                continue;
            };
            let peer = session.peer;
            let joining = session.their_join.is_some() && session.phase != Phase::Ready;
            if membership.is_member(&peer) || joining {
                if Some(id) != except || !session.sent_entries || key_entry {
                    // Small logs: send them whole; the peer drops what it has.
                    session.sent_entries = true;
                    out.send(
                        id,
                        &Message::Entries {
                            entries: entries.clone(),
                            withheld: false,
                        },
                    );
                }
                if Some(id) != except {
                    self.check_ready(id, now_ms, &mut out);
                }
            } else if session.phase == Phase::Ready || session.got_entries {
                self.refuse(id, &membership, &mut out);
            }
        }
        out
    }

    /// Offers a document's new changes to every ready session of the vault but `except`.
    pub(super) fn offer(
        &mut self,
        vault: VaultId,
        doc: DocId,
        except: Option<SessionId>,
        out: &mut Output,
    ) {
        let ids: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(id, s)| {
                Some(**id) != except && s.vault == Some(vault) && s.phase == Phase::Ready
            })
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let their = self
                .sessions
                .get(&id)
                .and_then(|s| s.their_heads.get(&doc).cloned());
            let Some(d) = self.vaults.get(&vault).and_then(|v| v.document(&doc)) else {
                return;
            };
            match their {
                Some(theirs) if theirs.iter().all(|h| d.has_change(h)) => {
                    self.send_changes_since(id, vault, doc, &theirs, out);
                }
                _ => {
                    let heads = d.heads();
                    out.send(
                        id,
                        &Message::DocHeads {
                            doc,
                            heads,
                            reply: false,
                        },
                    );
                }
            }
        }
    }
}

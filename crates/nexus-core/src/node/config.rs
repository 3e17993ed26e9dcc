//! [`NodeConfig`]: a node's timing and the sizes of what it takes in one step.

use crate::protocol::SNAPSHOT_MIN_CHANGES;

/// Timing settings of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeConfig {
    /// How often an idle ready session reconciles again (milliseconds).
    pub reconcile_interval_ms: u64,
    /// How long a handshake step waits before it is sent again (milliseconds).
    pub retry_ms: u64,
    /// A device with none of a document gets it as one snapshot when it has at least this
    /// many changes (and the snapshot fits a message); smaller ones travel as changes.
    pub snapshot_min_changes: usize,
    /// Most signatures of a peer's snapshot, or changes of one of its messages, checked
    /// (and applied) per call (0: all at once). With a limit, a big snapshot is loaded
    /// and checked, and a big message of changes checked and applied, over several
    /// [`Node::work`](super::Node::work) calls, and the session's later messages wait their turn: an engine
    /// on one thread (a browser tab) gives the page a turn between calls.
    pub verify_slice: usize,
    /// Most changes this device takes in one snapshot from a peer (0: any number). It
    /// tells its peers in `Hello`; a bigger document reaches it as a snapshot of its
    /// first changes, then the rest as changes, which (with a
    /// [`NodeConfig::verify_slice`]) are checked and applied a slice per
    /// [`Node::work`](super::Node::work) call. Loading a snapshot is the one step that cannot be cut up, so
    /// this bounds the longest step of a big first sync.
    pub snapshot_max_changes: usize,
}

impl NodeConfig {
    /// Defaults: reconcile every 30 s, retry handshake steps after 5 s, send documents of
    /// 32 changes or more to an empty device as a snapshot.
    pub fn new() -> Self {
        Self {
            reconcile_interval_ms: 30_000,
            retry_ms: 5_000,
            snapshot_min_changes: SNAPSHOT_MIN_CHANGES,
            verify_slice: 0,
            snapshot_max_changes: 0,
        }
    }

    /// Takes at most `changes` changes in one snapshot from a peer (see
    /// [`NodeConfig::snapshot_max_changes`]).
    pub fn with_snapshot_max_changes(mut self, changes: usize) -> Self {
        self.snapshot_max_changes = changes;
        self
    }

    /// Checks at most `signatures` of a peer's snapshot per call (see
    /// [`NodeConfig::verify_slice`]).
    pub fn with_verify_slice(mut self, signatures: usize) -> Self {
        self.verify_slice = signatures;
        self
    }

    /// Sets the snapshot threshold.
    pub fn with_snapshot_min_changes(mut self, changes: usize) -> Self {
        self.snapshot_min_changes = changes;
        self
    }

    /// Sets the reconcile interval.
    pub fn with_reconcile_interval_ms(mut self, ms: u64) -> Self {
        self.reconcile_interval_ms = ms;
        self
    }

    /// Sets the handshake retry delay.
    pub fn with_retry_ms(mut self, ms: u64) -> Self {
        self.retry_ms = ms;
        self
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self::new()
    }
}

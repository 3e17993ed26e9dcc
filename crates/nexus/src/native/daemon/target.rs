//! The native runtime as a target of the engine loop: its events (the shutdown signal,
//! the swarm, the mailbox's round trips, the control socket, commands, the store's poll)
//! and what it does at a deadline.

use super::*;

/// What reaches the native engine from its own side.
pub(crate) enum NativeEvent {
    Shutdown,
    Swarm(Box<SwarmEvent<PeerBehaviourEvent>>),
    Internal(Internal),
    Control(Request, oneshot::Sender<Reply>),
    Command(Command),
    StorePoll,
}

impl crate::engine::run::Target for NativeEngine {
    type Event = NativeEvent;

    async fn next_event(&mut self) -> NativeEvent {
        let shutdown = async {
            match self.shutdown.as_mut() {
                Some(shutdown) => shutdown.await,
                None => std::future::pending().await,
            }
        };
        let control = async {
            match self.control_rx.as_mut() {
                Some(control) => control.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown => NativeEvent::Shutdown,
            event = self.swarm.select_next_some() => NativeEvent::Swarm(Box::new(event)),
            Some(internal) = self.internal_rx.recv() => NativeEvent::Internal(internal),
            Some((request, reply)) = control => NativeEvent::Control(request, reply),
            Some(command) = self.commands_rx.recv() => NativeEvent::Command(command),
            () = self.store_poll.tick() => NativeEvent::StorePoll,
        }
    }

    async fn on_event(&mut self, event: NativeEvent) {
        match event {
            NativeEvent::Shutdown => {
                self.shutdown = None;
                let now = now_ms();
                self.poll_store(now);
                self.mailbox_round(now);
                self.stopping_at = Some(now + SHUTDOWN_GRACE_MS);
            }
            NativeEvent::Swarm(event) => self.on_swarm_event(*event),
            NativeEvent::Internal(internal) => self.on_internal(internal),
            NativeEvent::Control(request, reply) => self.on_control(request, reply),
            NativeEvent::Command(command) => self.on_command(command),
            NativeEvent::StorePoll => {
                // SQLite tells other processes' commits only when asked.
                let now = now_ms();
                self.poll_store(now);
                self.reopen_webrtc_listeners();
                if now.saturating_sub(self.last_mailbox_round) >= 1_000
                    && self.stopping_at.is_none()
                {
                    self.last_mailbox_round = now;
                    self.mailbox_round(now);
                }
            }
        }
    }

    async fn input(&mut self, input: Input) {
        NativeEngine::input(self, input);
    }

    async fn deliver(&mut self, delivery: Delivery) {
        if matches!(delivery, Delivery::Inbound(..)) {
            // The peer may be answering something another process just wrote (an invite
            // made with `nexus invite create`): take that in first.
            self.poll_store(now_ms());
        }
        if let Some(input) = self.core.take(delivery) {
            NativeEngine::input(self, input);
        }
    }

    fn has_work(&self) -> bool {
        self.core.node.has_work()
    }

    fn deadline(&self) -> Option<u64> {
        [self.core.deadline(), self.stopping_at]
            .into_iter()
            .flatten()
            .min()
    }

    async fn on_deadline(&mut self) {
        self.wakeups.fetch_add(1, Ordering::Relaxed);
        NativeEngine::input(self, Input::Tick);
    }

    fn stopping(&self) -> bool {
        self.stopping_at
            .is_some_and(|deadline| !self.mailboxes.busy() || now_ms() >= deadline)
    }
}

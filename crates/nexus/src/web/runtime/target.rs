//! The browser runtime as a target of the engine loop: its events (the swarm, the page
//! and the other tabs, the app's commands) and what it does at a deadline.

use super::*;

/// What reaches the browser engine from its own side.
pub(crate) enum WebIn {
    Swarm(Box<SwarmEvent<WebBehaviourEvent>>),
    Internal(Internal),
    /// `None`: every handle is gone.
    Command(Option<Command>),
}

impl Target for WebEngine {
    type Event = WebIn;

    async fn next_event(&mut self) -> WebIn {
        futures::select! {
            event = self.swarm.select_next_some() => WebIn::Swarm(Box::new(event)),
            internal = self.internal_rx.select_next_some() => WebIn::Internal(internal),
            command = self.commands_rx.next() => WebIn::Command(command),
        }
    }

    async fn on_event(&mut self, event: WebIn) {
        match event {
            WebIn::Swarm(event) => self.on_swarm_event(*event).await,
            WebIn::Internal(internal) => self.on_internal(internal).await,
            WebIn::Command(Some(command)) => self.on_command(command).await,
            // Nobody can use this peer any more.
            WebIn::Command(None) => self.stopping = true,
        }
    }

    async fn input(&mut self, input: Input) {
        WebEngine::input(self, input).await;
    }

    async fn deliver(&mut self, delivery: Delivery) {
        if let Some(input) = self.core.take(delivery) {
            WebEngine::input(self, input).await;
        }
    }

    fn has_work(&self) -> bool {
        self.core.node.has_work()
    }

    fn deadline(&self) -> Option<u64> {
        [
            self.core.deadline(),
            self.connects.iter().map(|c| c.deadline_ms).min(),
            (!self.from_other_tabs.is_empty()).then(|| now_ms() + TAB_READ_RETRY_MS),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    async fn on_deadline(&mut self) {
        self.wakeups += 1;
        if !self.from_other_tabs.is_empty() {
            self.read_other_tabs_changes().await;
        }
        self.expire_connects(now_ms());
        WebEngine::input(self, Input::Tick).await;
    }

    fn stopping(&self) -> bool {
        self.stopping
    }
}

//! Following a watched resolver: ask again after each answer, back off on
//! errors and on answers that bring nothing new.

use super::router::{Router, Timer};
use super::{Action, EndpointsVersion, Resolution};
use std::time::Instant;

#[derive(Debug)]
pub(super) struct ResolverState {
    version: Option<EndpointsVersion>,
    attempt: u32,
}

impl Router {
    pub(super) fn follow_resolver(&mut self, version: Option<EndpointsVersion>) {
        self.resolver = Some(ResolverState {
            version,
            attempt: 0,
        });
        self.actions.push_back(Action::Resolve { version });
    }

    /// The resolver answered an [`Action::Resolve`].
    pub fn handle_resolved(&mut self, now: Instant, res: Resolution) {
        self.handle_timeout(now);
        let Some(state) = self.resolver.as_mut() else {
            return;
        };
        if res.version.is_none() || res.version == state.version {
            // No news (or a resolver bug): ask again after a pause.
            return self.schedule_resolve();
        }
        state.version = res.version;
        state.attempt = 0;
        self.reconcile(&res.addrs);
        self.actions.push_back(Action::Resolve {
            version: res.version,
        });
        self.check_invariants();
    }

    /// The resolver failed; the router asks again after backoff.
    pub fn handle_resolve_failed(&mut self, now: Instant, reason: &str) {
        self.handle_timeout(now);
        if self.resolver.is_some() {
            tracing::warn!(reason, "resolver failed");
            self.schedule_resolve();
        }
    }

    fn schedule_resolve(&mut self) {
        let Some(state) = self.resolver.as_mut() else {
            return;
        };
        let attempt = state.attempt;
        state.attempt = state.attempt.saturating_add(1);
        let delay = self.config.backoff.delay(attempt, &mut self.rng);
        self.push_timer(self.now + delay, Timer::Resolve);
    }

    pub(super) fn resolve_due(&mut self) {
        if let Some(state) = &self.resolver {
            let version = state.version;
            self.actions.push_back(Action::Resolve { version });
        }
    }
}

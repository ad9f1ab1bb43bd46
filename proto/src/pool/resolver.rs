//! Following a watched resolver: ask again after each answer, back off on
//! errors and on answers that bring nothing new at once.

use super::router::{Router, Timer};
use super::{Action, EndpointsVersion, Resolution};
use crate::timer::later;
use std::time::{Duration, Instant};

/// An answer that brings nothing new and took at least this long came
/// from a resolver that waited for news (weft's own wait up to 5 s): it is
/// asked again at once, so a change is seen as soon as the resolver sees
/// it. A quicker one is backed off, lest a resolver that answers at once
/// keep the router asking in a loop.
pub(crate) const RESOLVER_WAITED: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(super) struct ResolverState {
    version: Option<EndpointsVersion>,
    attempt: u32,
    /// When the resolver was last asked.
    asked: Option<Instant>,
    /// Why it last failed, until it answers again: part of the error of a
    /// call no replica can take.
    pub(super) failed: Option<String>,
}

impl Router {
    pub(super) fn follow_resolver(&mut self, version: Option<EndpointsVersion>) {
        self.resolver = Some(ResolverState {
            version,
            attempt: 0,
            asked: None,
            failed: None,
        });
        self.ask_resolver();
    }

    fn ask_resolver(&mut self) {
        if let Some(state) = self.resolver.as_mut() {
            state.asked = Some(self.now);
            let version = state.version;
            self.actions.push_back(Action::Resolve { version });
        }
    }

    /// The resolver answered an [`Action::Resolve`].
    pub fn handle_resolved(&mut self, now: Instant, res: Resolution) {
        self.handle_timeout(now);
        let Some(state) = self.resolver.as_mut() else {
            return;
        };
        state.failed = None;
        if res.version.is_none() || res.version == state.version {
            let waited = state
                .asked
                .is_some_and(|t| now.saturating_duration_since(t) >= RESOLVER_WAITED);
            if waited && res.version.is_some() {
                // Nothing new after waiting for news: ask again now.
                state.attempt = 0;
                return self.ask_resolver();
            }
            // No news at once (or a resolver bug): ask again after a pause.
            return self.schedule_resolve();
        }
        state.version = res.version;
        state.attempt = 0;
        self.reconcile(&res.addrs);
        self.ask_resolver();
        self.check_invariants();
    }

    /// The resolver failed; the router asks again after backoff.
    pub fn handle_resolve_failed(&mut self, now: Instant, reason: &str) {
        self.handle_timeout(now);
        if let Some(state) = self.resolver.as_mut() {
            tracing::warn!(reason, "resolver failed");
            state.failed = Some(reason.to_owned());
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
        self.push_timer(later(self.now, delay), Timer::Resolve);
    }

    pub(super) fn resolve_due(&mut self) {
        self.ask_resolver();
    }
}

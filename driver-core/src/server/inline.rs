//! When a handler stops running on the connection's own thread or task.

use super::ServerOptions;
use std::time::{Duration, Instant};

/// The inline-then-move-off rule of
/// [`ServerOptions::inline_handler_duration`], in one place.
///
/// A handler first runs where the connection's events are processed, so a
/// fast call costs no hand-off; once it has run for the inline duration it
/// moves off (Tokio spawns its future, mio hands the event loop to another
/// thread), so a slow handler never holds up the other calls. With no
/// duration set, handlers move off before they start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InlinePolicy {
    limit: Option<Duration>,
}

impl InlinePolicy {
    /// The rule `opts` set.
    pub fn new(opts: &ServerOptions) -> Self {
        InlinePolicy {
            limit: opts.inline_handler_duration,
        }
    }

    /// Whether a handler starts inline; if not, it is moved off first.
    pub fn starts_inline(&self) -> bool {
        self.limit.is_some()
    }

    /// How long a handler may run inline (`None`: not at all).
    pub fn limit(&self) -> Option<Duration> {
        self.limit
    }

    /// When a handler that started inline at `started` must move off:
    /// `started` itself if handlers never run inline, `None` if the limit
    /// is too far away to represent (it never moves off).
    pub fn move_off_at(&self, started: Instant) -> Option<Instant> {
        started.checked_add(self.limit.unwrap_or(Duration::ZERO))
    }

    /// Whether a handler that started at `started` must move off by `now`.
    pub fn is_due(&self, started: Instant, now: Instant) -> bool {
        self.move_off_at(started).is_some_and(|at| now >= at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(limit: Option<Duration>) -> InlinePolicy {
        InlinePolicy::new(&ServerOptions {
            inline_handler_duration: limit,
            ..ServerOptions::default()
        })
    }

    #[test]
    fn moves_off_once_the_limit_has_passed() {
        let p = policy(Some(Duration::from_micros(20)));
        let t0 = Instant::now();
        assert!(p.starts_inline());
        assert_eq!(p.move_off_at(t0), Some(t0 + Duration::from_micros(20)));
        assert!(!p.is_due(t0, t0 + Duration::from_micros(19)));
        assert!(p.is_due(t0, t0 + Duration::from_micros(20)));
    }

    #[test]
    fn without_a_limit_nothing_runs_inline() {
        let p = policy(None);
        let t0 = Instant::now();
        assert!(!p.starts_inline());
        assert!(p.is_due(t0, t0));
    }

    #[test]
    fn an_unrepresentable_limit_never_moves_off() {
        let p = policy(Some(Duration::MAX));
        let t0 = Instant::now();
        assert_eq!(p.move_off_at(t0), None);
        assert!(!p.is_due(t0, t0 + Duration::from_secs(3600)));
    }
}

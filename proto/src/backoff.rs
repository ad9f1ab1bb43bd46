//! Exponential backoff with jitter, as Service Weaver's `retry` package.

use crate::rng::Rng;
use std::time::Duration;

/// How long to wait before the n-th retry.
///
/// The delay is `initial * multiplier^n`, capped at `max`, then shortened by
/// a random fraction up to `jitter` so that many clients that failed
/// together do not retry together.
///
/// ```
/// use std::time::Duration;
/// use weft_proto::Backoff;
/// use weft_proto::Rng;
/// let b = Backoff::default();
/// let mut rng = Rng::new(1);
/// let d = b.delay(0, &mut rng);
/// assert!(d <= Duration::from_millis(10) && d >= Duration::from_millis(6));
/// assert!(b.delay(100, &mut rng) <= Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay before the first retry (Go: 10 ms).
    pub initial: Duration,
    /// Growth per attempt (Go: 1.3).
    pub multiplier: f64,
    /// Largest fraction taken off at random (Go: 0.4).
    pub jitter: f64,
    /// Upper bound on any delay (Go has none; weft defaults to 5 s).
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(10),
            multiplier: 1.3,
            jitter: 0.4,
            max: Duration::from_secs(5),
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0-based).
    pub fn delay(&self, attempt: u32, rng: &mut Rng) -> Duration {
        let grown = self.initial.as_secs_f64() * self.multiplier.powi(attempt.min(1000) as i32);
        let capped = grown.min(self.max.as_secs_f64());
        let jittered = capped * (1.0 - self.jitter.clamp(0.0, 1.0) * rng.unit());
        Duration::try_from_secs_f64(jittered).unwrap_or(self.max)
    }
}

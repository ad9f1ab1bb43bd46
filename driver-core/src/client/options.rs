//! Client settings, the same for every driver.

use super::ClientConfig;
use std::time::Duration;
use weft_proto::Backoff;
use weft_proto::{Balancer, ConnConfig, RoundRobin};
use weft_proto::{DEFAULT_CONNECT_TIMEOUT, PoolConfig};

/// Client settings.
///
/// ```
/// use weft_driver::client::ClientOptions;
/// let opts = ClientOptions { seed: Some(7), ..ClientOptions::default() };
/// assert_eq!(opts.max_message_size, 100 << 20);
/// ```
pub struct ClientOptions {
    /// Picks a replica per call (default [`RoundRobin`]).
    pub balancer: Box<dyn Balancer>,
    /// Backoff for redials, retries and resolver errors.
    pub backoff: Backoff,
    /// Frames up to this size are copied into one write; larger payloads
    /// are written vectored, without copying (default 4 KiB).
    pub write_flatten_limit: usize,
    /// Largest response accepted (default 100 MiB).
    pub max_message_size: u64,
    /// Bytes of requests a connection queues for its socket before later
    /// requests wait, unencoded, and calls go to other replicas (default
    /// 4 MiB): what a server that stops reading can cost this client. See
    /// [`ConnConfig::max_request_backlog`].
    pub max_request_backlog: usize,
    /// Seed for the pool's RNG; `None` draws one from the OS.
    pub seed: Option<u64>,
    /// How long a dial plus the version handshake may take before the
    /// attempt counts as failed (default 5 s).
    pub connect_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        let conn = ConnConfig::default();
        ClientOptions {
            balancer: Box::new(RoundRobin::new()),
            backoff: Backoff::default(),
            write_flatten_limit: conn.flatten_limit,
            max_message_size: conn.max_payload,
            max_request_backlog: conn.max_request_backlog,
            seed: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("backoff", &self.backoff)
            .field("write_flatten_limit", &self.write_flatten_limit)
            .field("max_message_size", &self.max_message_size)
            .field("max_request_backlog", &self.max_request_backlog)
            .field("seed", &self.seed)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl ClientOptions {
    /// What the core needs of these options.
    pub fn into_config(self) -> ClientConfig {
        ClientConfig {
            pool: PoolConfig {
                conn: ConnConfig {
                    max_payload: self.max_message_size,
                    flatten_limit: self.write_flatten_limit,
                    max_request_backlog: self.max_request_backlog,
                },
                backoff: self.backoff,
                seed: self.seed.unwrap_or_else(crate::random_seed),
                connect_timeout: self.connect_timeout,
            },
            balancer: self.balancer,
        }
    }
}

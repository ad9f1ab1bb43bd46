//! The DNS resolver's shared half: what to look up, when to look again,
//! and the versioned set the answers make (feature `dns`).
//!
//! Two kinds of target, as grpc's DNS resolver and Service Weaver's name
//! them: `host:port`, whose A/AAAA records are the replicas (a Kubernetes
//! headless Service answers with one record per ready pod), and an SRV
//! name `_service._proto.name`, whose records carry each replica's host
//! and port. The set is looked up again when its records' TTL runs out,
//! bounded by [`DnsOptions::min_ttl`] and [`DnsOptions::max_ttl`] so that
//! a zero TTL cannot make a client hammer its DNS server and a long one
//! cannot hide a change for hours. Lookups go through hickory-resolver,
//! which runs on Tokio; the blocking form (weft-mio) drives it on a small
//! runtime of its own.

use crate::resolver::ResolveError;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use weft_proto::{EndpointsVersion, NetEndpoint};

/// What to look up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsTarget {
    /// A/AAAA records of `name`, each a replica on `port` (`dns://name:port`).
    Host {
        /// The name.
        name: String,
        /// The port every replica serves on.
        port: u16,
    },
    /// SRV records of `name` (`_service._proto.name`), each naming a
    /// replica's host and port (`dns+srv://_svc._tcp.name`). Only the
    /// lowest priority's targets are replicas, the next priority's only
    /// when none of those has an address (RFC 2782's failover, as far as a
    /// resolver can tell: a target that resolves but is down is the
    /// balancer's business); weights are not used (the balancer picks
    /// among the replicas).
    Srv {
        /// The SRV name.
        name: String,
    },
}

impl DnsTarget {
    /// Parses `dns://name:port` or `dns+srv://name`.
    ///
    /// ```
    /// use weft_driver::dns::DnsTarget;
    /// assert_eq!(
    ///     DnsTarget::parse("dns://cart.shop.svc.cluster.local:7000")?,
    ///     DnsTarget::Host { name: "cart.shop.svc.cluster.local".into(), port: 7000 }
    /// );
    /// assert_eq!(
    ///     DnsTarget::parse("dns+srv://_weft._tcp.cart")?,
    ///     DnsTarget::Srv { name: "_weft._tcp.cart".into() }
    /// );
    /// # Ok::<(), weft_driver::resolver::ResolveError>(())
    /// ```
    pub fn parse(addr: &str) -> Result<Self, ResolveError> {
        let bad = |why: &str| ResolveError(format!("{addr:?}: {why}"));
        if let Some(name) = addr.strip_prefix("dns+srv://") {
            if name.is_empty() {
                return Err(bad("no SRV name"));
            }
            return Ok(DnsTarget::Srv { name: name.into() });
        }
        let Some(rest) = addr.strip_prefix("dns://") else {
            return Err(bad("expected dns://name:port or dns+srv://name"));
        };
        let (name, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| bad("expected dns://name:port"))?;
        let port = port.parse().map_err(|_| bad("bad port"))?;
        if name.is_empty() {
            return Err(bad("no name"));
        }
        Ok(DnsTarget::Host {
            name: name.into(),
            port,
        })
    }
}

/// How a DNS resolver looks things up.
#[derive(Debug, Clone)]
pub struct DnsOptions {
    /// Look again no sooner than this, whatever the TTL (default 1 s).
    pub min_ttl: Duration,
    /// Look again no later than this, whatever the TTL (default 60 s).
    pub max_ttl: Duration,
    /// The DNS servers to ask; `None` reads the system's configuration
    /// (`/etc/resolv.conf`).
    pub nameservers: Option<Vec<SocketAddr>>,
    /// How long one query waits for an answer (default 2 s).
    pub timeout: Duration,
}

impl Default for DnsOptions {
    fn default() -> Self {
        DnsOptions {
            min_ttl: Duration::from_secs(1),
            max_ttl: Duration::from_secs(60),
            nameservers: None,
            timeout: Duration::from_secs(2),
        }
    }
}

impl DnsOptions {
    /// When to look again after records valid until `valid_until`.
    pub fn next_lookup(&self, now: Instant, valid_until: Instant) -> Instant {
        now + valid_until
            .saturating_duration_since(now)
            .clamp(self.min_ttl, self.max_ttl.max(self.min_ttl))
    }
}

/// A DNS target, its resolver, and the versioned set of its last answer.
pub struct Dns {
    target: DnsTarget,
    opts: DnsOptions,
    resolver: TokioResolver,
    last: Mutex<(Vec<NetEndpoint>, EndpointsVersion)>,
    /// When the last answer said to look again: the next resolve waits for
    /// it, whatever the router asks, so that a name whose answers change
    /// every time is still looked up no more often than its TTL allows.
    next: Mutex<Option<Instant>>,
    /// The blocking form's runtime, made on first use.
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dns")
            .field("target", &self.target)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// One answer: the replicas, the set's version, and when to look again.
#[derive(Debug, Clone)]
pub struct DnsAnswer {
    /// The replicas, sorted.
    pub endpoints: Vec<NetEndpoint>,
    /// Bumped whenever the set differs from the previous answer.
    pub version: EndpointsVersion,
    /// When the records expire (clamped by the options).
    pub next_lookup: Instant,
}

impl Dns {
    /// A resolver of `target`.
    pub fn new(target: DnsTarget, opts: DnsOptions) -> Result<Self, ResolveError> {
        let err = |e: &dyn std::fmt::Display| ResolveError(format!("dns: {e}"));
        let builder = match &opts.nameservers {
            None => TokioResolver::builder_tokio().map_err(|e| err(&e))?,
            Some(servers) => {
                let mut config = ResolverConfig::from_parts(None, vec![], vec![]);
                for s in servers {
                    let mut ns = NameServerConfig::udp_and_tcp(s.ip());
                    for c in &mut ns.connections {
                        c.port = s.port();
                    }
                    config.add_name_server(ns);
                }
                TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            }
        };
        let mut ropts = ResolverOpts::default();
        // weft schedules lookups by TTL itself; a cache would answer them
        // with what it already had.
        ropts.cache_size = 0;
        ropts.timeout = opts.timeout;
        let resolver = builder.with_options(ropts).build().map_err(|e| err(&e))?;
        Ok(Dns {
            target,
            opts,
            resolver,
            last: Mutex::new((Vec::new(), EndpointsVersion(0))),
            next: Mutex::new(None),
            runtime: Mutex::new(None),
        })
    }

    /// The target.
    pub fn target(&self) -> &DnsTarget {
        &self.target
    }

    /// The options.
    pub fn options(&self) -> &DnsOptions {
        &self.opts
    }

    /// Looks the target up once (on the caller's Tokio runtime).
    pub async fn lookup(&self) -> Result<DnsAnswer, ResolveError> {
        let err = |e: &dyn std::fmt::Display| ResolveError(format!("dns {:?}: {e}", self.target));
        let now = Instant::now();
        let (mut endpoints, valid_until) = match &self.target {
            DnsTarget::Host { name, port } => match self.resolver.lookup_ip(name.as_str()).await {
                Ok(ips) => {
                    let eps = ips.iter().map(|ip| tcp(ip, *port)).collect::<Vec<_>>();
                    (eps, ips.valid_until())
                }
                // No records is an answer: the name has no replicas now
                // (a service scaled to zero), not a failure to keep the
                // previous set through.
                Err(e) if e.is_no_records_found() => (Vec::new(), now),
                Err(e) => return Err(err(&e)),
            },
            DnsTarget::Srv { name } => {
                let srv = match self.resolver.srv_lookup(name.as_str()).await {
                    Ok(srv) => srv,
                    Err(e) if e.is_no_records_found() => {
                        return Ok(self.answer(Vec::new(), now, now));
                    }
                    Err(e) => return Err(err(&e)),
                };
                let mut valid_until = srv.valid_until();
                // RFC 2782: the lowest priority whose targets answer; the
                // next only if none of them does. ("." is "no service".)
                let mut by_priority: std::collections::BTreeMap<u16, Vec<(String, u16)>> =
                    Default::default();
                for record in srv.answers() {
                    if let RData::SRV(s) = &record.data
                        && !s.target.is_root()
                    {
                        let group = by_priority.entry(s.priority).or_default();
                        group.push((s.target.to_utf8(), s.port));
                    }
                }
                let mut eps = Vec::new();
                let mut failed = None;
                for group in by_priority.values() {
                    for (host, port) in group {
                        // One target that does not resolve (a replica
                        // going away, a stale record) must not hide the
                        // others.
                        match self.resolver.lookup_ip(host.as_str()).await {
                            Ok(ips) => {
                                valid_until = valid_until.min(ips.valid_until());
                                eps.extend(ips.iter().map(|ip| tcp(ip, *port)));
                            }
                            Err(e) if e.is_no_records_found() => {}
                            Err(e) => {
                                tracing::debug!(target = %host, error = %e, "an SRV target did not resolve");
                                failed = Some((host.clone(), e));
                            }
                        }
                    }
                    // The next priority only if this one has no
                    // addresses at all: a lookup that failed (a timeout)
                    // says nothing about its targets, and moving every
                    // call to the backups on it would drain the primaries.
                    if !eps.is_empty() || failed.is_some() {
                        break;
                    }
                }
                // Every target of the priority tried failed: the lookup
                // did, and the previous set stands.
                if let Some((host, e)) = failed
                    && eps.is_empty()
                {
                    return Err(err(&format_args!("target {host}: {e}")));
                }
                (eps, valid_until)
            }
        };
        endpoints.sort_by_cached_key(|e| e.to_string());
        endpoints.dedup();
        Ok(self.answer(endpoints, now, valid_until))
    }

    /// The answer for `endpoints` (sorted, deduplicated): a new version
    /// only when the set changed.
    fn answer(&self, endpoints: Vec<NetEndpoint>, now: Instant, valid_until: Instant) -> DnsAnswer {
        let next_lookup = self.opts.next_lookup(now, valid_until);
        *self.next.lock().expect("dns state poisoned") = Some(next_lookup);
        let mut last = self.last.lock().expect("dns state poisoned");
        if last.1 == EndpointsVersion(0) || last.0 != endpoints {
            last.0 = endpoints;
            last.1 = EndpointsVersion(last.1.0 + 1);
        }
        DnsAnswer {
            endpoints: last.0.clone(),
            version: last.1,
            next_lookup,
        }
    }

    /// When the next lookup is due, if the last answer said (a resolve
    /// that follows the name waits for it before looking).
    pub fn next_lookup(&self) -> Option<Instant> {
        *self.next.lock().expect("dns state poisoned")
    }

    /// Looks the target up once, blocking the calling thread (for
    /// drivers without Tokio).
    pub fn lookup_blocking(&self) -> Result<DnsAnswer, ResolveError> {
        let mut rt = self.runtime.lock().expect("dns runtime poisoned");
        if rt.is_none() {
            *rt = Some(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| ResolveError(format!("dns runtime: {e}")))?,
            );
        }
        rt.as_ref().expect("made above").block_on(self.lookup())
    }
}

fn tcp(ip: IpAddr, port: u16) -> NetEndpoint {
    NetEndpoint::Tcp(SocketAddr::new(ip, port).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ttl_is_bounded() {
        let opts = DnsOptions {
            min_ttl: Duration::from_secs(1),
            max_ttl: Duration::from_secs(60),
            ..DnsOptions::default()
        };
        let now = Instant::now();
        assert_eq!(opts.next_lookup(now, now), now + Duration::from_secs(1));
        assert_eq!(
            opts.next_lookup(now, now + Duration::from_secs(30)),
            now + Duration::from_secs(30)
        );
        assert_eq!(
            opts.next_lookup(now, now + Duration::from_secs(86_400)),
            now + Duration::from_secs(60)
        );
    }

    #[test]
    fn targets_parse_and_bad_ones_say_why() {
        assert!(
            DnsTarget::parse("dns://cart")
                .unwrap_err()
                .0
                .contains("name:port")
        );
        assert!(
            DnsTarget::parse("dns://cart:x")
                .unwrap_err()
                .0
                .contains("port")
        );
        assert!(DnsTarget::parse("tcp://cart:1").is_err());
    }
}

//! Service discovery over real sockets: a client following a resolver
//! while replicas come and go, with calls running and none failing.

use std::path::{Path, PathBuf};
use std::time::Duration;
use weft_proto::{CallOptions, EndpointsVersion, NetEndpoint};
use weft_tests::{Driver, ServerOptions, TestClient, TestServer};

const SOON: Duration = Duration::from_secs(10);

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn serve(s: Driver, dir: &Path, name: &str) -> TestServer {
    let bind = NetEndpoint::Unix(dir.join(format!("{name}.sock")));
    TestServer::start_on(s, &bind, name, ServerOptions::default())
}

/// Calls `Who` until `n` answers in a row come from `name`: with round
/// robin over the ready replicas, every other replica is out of the set.
fn only(client: &TestClient, name: &str, n: usize) {
    let deadline = std::time::Instant::now() + SOON;
    let mut run = 0;
    while run < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{name} never served alone"
        );
        let who = client.call("Who", "", CallOptions::default()).unwrap();
        run = if who == name.as_bytes() { run + 1 } else { 0 };
    }
}

fn follows_a_directory(c: Driver, s: Driver) {
    let dir = temp_dir(&format!("unixdir-{c:?}-{s:?}"));
    let a = serve(s, &dir, "a");
    let client = TestClient::connect_resolver(
        c,
        weft_tokio::UnixDirResolver::new(&dir),
        weft_mio::UnixDirResolver::new(&dir),
    )
    .unwrap();
    only(&client, "a", 5);
    let load = client.keep_calling(16, "Sleep", "1");

    // A replica appears: it is found and takes calls.
    let b = serve(s, &dir, "b");
    assert!(b.service.wait_started(100, SOON), "b found and called");

    // A replica's socket goes away (as a server unregisters before it
    // stops): the client drops it (only b answers), and the calls still
    // running on it finish as it shuts down: none fails.
    std::fs::remove_file(dir.join("a.sock")).unwrap();
    only(&client, "b", 20);
    let _stopped = a.shutdown(SOON);
    let served = b.service.started();
    assert!(b.service.wait_started(served + 100, SOON), "b carries on");

    let report = load.finish();
    assert_eq!(report.failures, 0, "{:?}", report.errors);
    assert!(report.calls > 200);
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unixdir_tokio_client() {
    follows_a_directory(Driver::Tokio, Driver::Mio);
}

#[test]
fn unixdir_mio_client() {
    follows_a_directory(Driver::Mio, Driver::Tokio);
}

fn dns_opts(dns: &weft_tests::dns::TestDns) -> weft_tokio::dns::DnsOptions {
    weft_tokio::dns::DnsOptions {
        // The test server's TTL is 0: look again every 100 ms.
        min_ttl: Duration::from_millis(100),
        max_ttl: Duration::from_secs(1),
        nameservers: Some(vec![dns.addr()]),
        ..Default::default()
    }
}

fn dns_client(c: Driver, target: &str, dns: &weft_tests::dns::TestDns) -> TestClient {
    let target = weft_tokio::dns::DnsTarget::parse(target).unwrap();
    TestClient::connect_resolver(
        c,
        weft_tokio::DnsResolver::new(target.clone(), dns_opts(dns)).unwrap(),
        weft_mio::DnsResolver::new(target, dns_opts(dns)).unwrap(),
    )
    .unwrap()
}

/// Replicas as A records: one port, two loopback addresses.
fn follows_a_records(c: Driver, s: Driver) {
    let dns = weft_tests::dns::TestDns::start();
    let a = TestServer::start_on(
        s,
        &weft_tokio::tcp("127.0.0.1:0"),
        "a",
        ServerOptions::default(),
    );
    let NetEndpoint::Tcp(addr) = &a.endpoint else {
        unreachable!()
    };
    let port: u16 = addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let b_addr = weft_tokio::tcp(format!("127.0.0.2:{port}"));
    dns.set_a("cart.weft.test.", &["127.0.0.1".parse().unwrap()]);
    let client = dns_client(c, &format!("dns://cart.weft.test.:{port}"), &dns);
    only(&client, "a", 5);
    let load = client.keep_calling(16, "Sleep", "1");

    // A record added: the new replica is found and called.
    let b = TestServer::start_on(s, &b_addr, "b", ServerOptions::default());
    dns.set_a(
        "cart.weft.test.",
        &["127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap()],
    );
    assert!(b.service.wait_started(100, SOON), "b found and called");

    // A record removed: the replica is dropped (only b answers) and its
    // last calls finish as it shuts down: none fails.
    dns.set_a("cart.weft.test.", &["127.0.0.2".parse().unwrap()]);
    only(&client, "b", 20);
    let _stopped = a.shutdown(SOON);
    let served = b.service.started();
    assert!(b.service.wait_started(served + 100, SOON), "b carries on");
    let report = load.finish();
    assert_eq!(report.failures, 0, "{:?}", report.errors);
}

/// Replicas as SRV records: one host, a port each.
fn follows_srv_records(c: Driver, s: Driver) {
    let dns = weft_tests::dns::TestDns::start();
    let port = |t: &TestServer| -> u16 {
        let NetEndpoint::Tcp(addr) = &t.endpoint else {
            unreachable!()
        };
        addr.rsplit_once(':').unwrap().1.parse().unwrap()
    };
    let a = TestServer::start(s, weft_tests::Transport::Tcp, "a");
    let b = TestServer::start(s, weft_tests::Transport::Tcp, "b");
    dns.set_a("replicas.weft.test.", &["127.0.0.1".parse().unwrap()]);
    dns.set_srv(
        "_weft._tcp.cart.weft.test.",
        &[(port(&a), "replicas.weft.test.")],
    );
    let client = dns_client(c, "dns+srv://_weft._tcp.cart.weft.test.", &dns);
    only(&client, "a", 5);
    let load = client.keep_calling(16, "Sleep", "1");
    dns.set_srv(
        "_weft._tcp.cart.weft.test.",
        &[
            (port(&a), "replicas.weft.test."),
            (port(&b), "replicas.weft.test."),
        ],
    );
    assert!(b.service.wait_started(100, SOON), "b found and called");
    dns.set_srv(
        "_weft._tcp.cart.weft.test.",
        &[(port(&b), "replicas.weft.test.")],
    );
    only(&client, "b", 20);
    let _stopped = a.shutdown(SOON);
    let served = b.service.started();
    assert!(b.service.wait_started(served + 100, SOON), "b carries on");
    let report = load.finish();
    assert_eq!(report.failures, 0, "{:?}", report.errors);
}

/// One lookup of `target` against the test server.
fn lookup(dns: &weft_tests::dns::TestDns, target: &str) -> weft_driver::dns::DnsAnswer {
    let target = weft_driver::dns::DnsTarget::parse(target).unwrap();
    weft_driver::dns::Dns::new(target, dns_opts(dns))
        .unwrap()
        .lookup_blocking()
        .unwrap()
}

/// A name with no records now (a service scaled to zero) is an empty set,
/// not an error that keeps the last one.
#[test]
fn a_name_without_records_resolves_to_no_replicas() {
    let dns = weft_tests::dns::TestDns::start();
    assert!(
        lookup(&dns, "dns://gone.weft.test.:80")
            .endpoints
            .is_empty()
    );
    assert!(
        lookup(&dns, "dns+srv://_weft._tcp.gone.weft.test.")
            .endpoints
            .is_empty()
    );
}

/// One SRV target that does not resolve (a replica going away, a stale
/// record) leaves the others in the set.
#[test]
fn an_srv_target_that_does_not_resolve_hides_no_other() {
    let dns = weft_tests::dns::TestDns::start();
    dns.set_a("up.weft.test.", &["127.0.0.1".parse().unwrap()]);
    dns.set_srv(
        "_weft._tcp.cart.weft.test.",
        &[(7001, "up.weft.test."), (7002, "gone.weft.test.")],
    );
    let answer = lookup(&dns, "dns+srv://_weft._tcp.cart.weft.test.");
    assert_eq!(answer.endpoints, [weft_tokio::tcp("127.0.0.1:7001")]);
}

/// SRV priorities (RFC 2782): only the lowest priority's targets are
/// replicas; the next priority's only when none of those resolves.
#[test]
fn srv_records_of_a_higher_priority_are_a_fallback() {
    let dns = weft_tests::dns::TestDns::start();
    dns.set_a("up.weft.test.", &["127.0.0.1".parse().unwrap()]);
    dns.set_a("backup.weft.test.", &["127.0.0.2".parse().unwrap()]);
    dns.set_srv_prioritized(
        "_weft._tcp.cart.weft.test.",
        &[
            (20, 7009, "backup.weft.test."),
            (10, 7001, "up.weft.test."),
            (10, 7002, "up.weft.test."),
        ],
    );
    let answer = lookup(&dns, "dns+srv://_weft._tcp.cart.weft.test.");
    assert_eq!(
        answer.endpoints,
        [
            weft_tokio::tcp("127.0.0.1:7001"),
            weft_tokio::tcp("127.0.0.1:7002")
        ]
    );
    // The first priority's targets are gone: the backup serves.
    dns.set_srv_prioritized(
        "_weft._tcp.cart.weft.test.",
        &[
            (20, 7009, "backup.weft.test."),
            (10, 7001, "gone.weft.test."),
        ],
    );
    let answer = lookup(&dns, "dns+srv://_weft._tcp.cart.weft.test.");
    assert_eq!(answer.endpoints, [weft_tokio::tcp("127.0.0.2:7009")]);
}

/// A records all removed: the client stops calling the replica and says
/// the resolver names none.
fn follows_a_name_to_no_records(c: Driver, s: Driver) {
    let dns = weft_tests::dns::TestDns::start();
    let a = TestServer::start(s, weft_tests::Transport::Tcp, "a");
    let NetEndpoint::Tcp(addr) = &a.endpoint else {
        unreachable!()
    };
    let port: u16 = addr.rsplit_once(':').unwrap().1.parse().unwrap();
    dns.set_a("cart.weft.test.", &["127.0.0.1".parse().unwrap()]);
    let client = dns_client(c, &format!("dns://cart.weft.test.:{port}"), &dns);
    only(&client, "a", 1);
    dns.set_a("cart.weft.test.", &[]);
    let give_up = std::time::Instant::now() + SOON;
    let err = loop {
        match client.call("Who", "", weft_proto::CallOptions::default()) {
            Err(e) => break e,
            Ok(_) => assert!(std::time::Instant::now() < give_up, "still called"),
        }
    };
    assert!(err.is_unreachable(), "{err}");
    assert!(err.to_string().contains("names no endpoints"), "{err}");
    client.close();
    a.stop();
}

#[test]
fn dns_to_no_records_tokio_client() {
    follows_a_name_to_no_records(Driver::Tokio, Driver::Mio);
}

#[test]
fn dns_to_no_records_mio_client() {
    follows_a_name_to_no_records(Driver::Mio, Driver::Tokio);
}

/// A name answered differently on every query (as DNS services that
/// return a random subset do) is still looked up no more often than its
/// TTL allows (here the test's 100 ms minimum), not as fast as answers
/// come back.
fn changing_answers_are_paced(c: Driver) {
    let dns = weft_tests::dns::TestDns::start();
    dns.set_a_rotating(
        "flappy.weft.test.",
        &["127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap()],
    );
    let client = dns_client(c, "dns://flappy.weft.test.:9", &dns);
    let before = dns.a_queries();
    // An observation window, not a synchronisation: about ten lookups a
    // second when paced; an unpaced client made hundreds.
    std::thread::sleep(Duration::from_secs(1));
    let n = dns.a_queries() - before;
    client.close();
    assert!((2..=20).contains(&n), "{n} lookups in one second");
}

#[test]
fn dns_changing_answers_tokio_client() {
    changing_answers_are_paced(Driver::Tokio);
}

#[test]
fn dns_changing_answers_mio_client() {
    changing_answers_are_paced(Driver::Mio);
}

/// Answers once with no replicas, then fails every time: with an error,
/// or (`panics`) by panicking.
struct FailsAfterFirst {
    answered: std::sync::atomic::AtomicBool,
    panics: bool,
}

impl FailsAfterFirst {
    fn answer(&self) -> Result<EndpointsVersion, weft_tokio::ResolveError> {
        if !self
            .answered
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return Ok(EndpointsVersion(1));
        }
        assert!(!self.panics, "the registry client broke");
        Err(weft_tokio::ResolveError("the registry is down".into()))
    }
}

impl weft_tokio::Resolver for FailsAfterFirst {
    fn resolve(
        &self,
        _: Option<EndpointsVersion>,
    ) -> weft_tokio::BoxFuture<'_, weft_tokio::Resolved> {
        Box::pin(async move { self.answer().map(|v| (Vec::new(), Some(v))) })
    }
}

impl weft_mio::Resolver for FailsAfterFirst {
    fn resolve(&self, _: Option<EndpointsVersion>) -> weft_mio::Resolved {
        self.answer().map(|v| (Vec::new(), Some(v)))
    }
}

/// A call no replica can take says why the set may be stale: the
/// resolver's own failure, not only "names no endpoints".
fn a_failing_resolver_is_named_in_call_errors(c: Driver, panics: bool) {
    let new = || FailsAfterFirst {
        answered: std::sync::atomic::AtomicBool::new(false),
        panics,
    };
    let why = match panics {
        true => "resolver failed: the resolver panicked: the registry client broke",
        false => "resolver failed: the registry is down",
    };
    let client = TestClient::connect_resolver(c, new(), new()).unwrap();
    let give_up = std::time::Instant::now() + SOON;
    loop {
        let err = client
            .call("Echo", "", weft_proto::CallOptions::default())
            .unwrap_err();
        assert!(err.is_unreachable(), "{err}");
        if err.to_string().contains(why) {
            break;
        }
        // The failure comes with the resolver's second answer: until then
        // only the empty set is known.
        assert!(std::time::Instant::now() < give_up, "{err}");
        std::thread::yield_now();
    }
    client.close();
}

#[test]
fn failing_resolver_tokio_client() {
    a_failing_resolver_is_named_in_call_errors(Driver::Tokio, false);
}

#[test]
fn failing_resolver_mio_client() {
    a_failing_resolver_is_named_in_call_errors(Driver::Mio, false);
}

/// A resolver that panics fails that resolve (and is asked again after
/// backoff) rather than ending the task or thread that asked it, after
/// which the client would never resolve again.
#[test]
fn panicking_resolver_tokio_client() {
    a_failing_resolver_is_named_in_call_errors(Driver::Tokio, true);
}

#[test]
fn panicking_resolver_mio_client() {
    a_failing_resolver_is_named_in_call_errors(Driver::Mio, true);
}

#[test]
fn dns_a_tokio_client() {
    follows_a_records(Driver::Tokio, Driver::Mio);
}

#[test]
fn dns_a_mio_client() {
    follows_a_records(Driver::Mio, Driver::Tokio);
}

#[test]
fn dns_srv_tokio_client() {
    follows_srv_records(Driver::Tokio, Driver::Tokio);
}

#[test]
fn dns_srv_mio_client() {
    follows_srv_records(Driver::Mio, Driver::Mio);
}

/// A CA; a server certificate for `localhost` it signed; a client
/// identity it signed; and client settings trusting it.
fn mtls() -> (weft_tokio::tls::ServerTls, weft_tokio::tls::ClientTls) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    use weft_tokio::tls::{ClientTls, Identity, RootCerts, ServerTls};
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "discovery CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = params.self_signed(&ca_key).unwrap();
    let issue = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        Identity::from_pem(cert.pem(), key.serialize_pem()).unwrap()
    };
    let roots = RootCerts::from_pem(ca.pem()).unwrap();
    let server = ServerTls::new(&issue("localhost"), Some(&roots)).unwrap();
    let client = ClientTls::new(&roots, Some(&issue("client")))
        .unwrap()
        .with_domain_name("localhost");
    (server, client)
}

/// A followed set behind mutual TLS: every replica the resolver finds is
/// dialled with the client's certificate; without TLS the same set fails.
fn follows_a_directory_over_mtls(c: Driver, s: Driver) {
    let dir = temp_dir(&format!("unixdir-tls-{c:?}-{s:?}"));
    let (server_tls, client_tls) = mtls();
    let bind = |name: &str| NetEndpoint::Unix(dir.join(format!("{name}.sock")));
    let _a = TestServer::start_tls_on(s, &bind("a"), "a", server_tls.clone());
    let client = TestClient::connect_resolver(
        c,
        weft_tokio::UnixDirResolver::new(&dir).tls(client_tls.clone()),
        weft_mio::UnixDirResolver::new(&dir).tls(client_tls),
    )
    .unwrap();
    only(&client, "a", 3);
    let b = TestServer::start_tls_on(s, &bind("b"), "b", server_tls);
    let load = client.keep_calling(4, "Sleep", "1");
    assert!(
        b.service.wait_started(20, SOON),
        "b found and called over TLS"
    );
    let report = load.finish();
    assert_eq!(report.failures, 0, "{:?}", report.errors);

    // The same directory without TLS: the servers refuse plaintext.
    let plain = TestClient::connect_resolver(
        c,
        weft_tokio::UnixDirResolver::new(&dir),
        weft_mio::UnixDirResolver::new(&dir),
    );
    let failed = match plain {
        Err(e) => e,
        Ok(plain) => plain.call("Who", "", CallOptions::default()).unwrap_err(),
    };
    assert!(failed.to_string().contains("TLS"), "{failed}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unixdir_over_mtls_tokio_client() {
    follows_a_directory_over_mtls(Driver::Tokio, Driver::Mio);
}

#[test]
fn unixdir_over_mtls_mio_client() {
    follows_a_directory_over_mtls(Driver::Mio, Driver::Tokio);
}

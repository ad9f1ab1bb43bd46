//! `--addr` forms and the TLS flags of serve, call and bench, over the
//! built binary.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{Serve, WEFT};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weft-addresses-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `weft serve` with `args`; stopped when dropped.
fn serve(args: &[&str]) -> Serve {
    Serve::start(args)
}

fn weft(args: &[&str]) -> Output {
    Command::new(WEFT).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A CA, and files for a certificate it signed for 127.0.0.1.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn pki(dir: &Path, name: &str) -> Pki {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} CA"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = params.self_signed(&ca_key).unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".into()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca, &ca_key).unwrap();
    let p = Pki {
        ca: dir.join(format!("{name}-ca.pem")),
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    };
    std::fs::write(&p.ca, ca.pem()).unwrap();
    std::fs::write(&p.cert, cert.pem()).unwrap();
    std::fs::write(&p.key, key.serialize_pem()).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn mutual_tls_with_the_flags_on_both_drivers() {
    let dir = tmp("mtls");
    let (server_pki, client_pki, other) =
        (pki(&dir, "server"), pki(&dir, "client"), pki(&dir, "other"));
    for driver in ["tokio", "mio"] {
        let server = serve(&[
            "--driver",
            driver,
            "--addr",
            "tls://127.0.0.1:0",
            "--tls-cert",
            s(&server_pki.cert),
            "--tls-key",
            s(&server_pki.key),
            "--tls-client-ca",
            s(&client_pki.ca),
        ]);
        let addr = server.addr.clone();
        assert!(addr.starts_with("tls://"), "{addr}");
        let call = |cert: &Pki| {
            weft(&[
                "call",
                "--addr",
                &addr,
                "--method",
                "Echo",
                "--data",
                "hi",
                "--tls-ca",
                s(&server_pki.ca),
                "--tls-cert",
                s(&cert.cert),
                "--tls-key",
                s(&cert.key),
            ])
        };
        let ok = call(&client_pki);
        assert!(ok.status.success(), "{driver}: {}", stderr(&ok));
        assert_eq!(ok.stdout, b"hi");
        // A client certificate from another CA is refused, and the error
        // says TLS.
        let refused = call(&other);
        assert_eq!(refused.status.code(), Some(6), "{driver}");
        assert!(
            stderr(&refused).contains("TLS"),
            "{driver}: {}",
            stderr(&refused)
        );
    }
}

#[test]
fn tls_flags_that_cannot_apply_are_refused() {
    let o = weft(&["call", "--addr", "tls://127.0.0.1:1", "--method", "Echo"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("needs --tls-ca"), "{}", stderr(&o));
    let o = weft(&[
        "call",
        "--addr",
        "tcp://127.0.0.1:1",
        "--method",
        "Echo",
        "--tls-ca",
        "x.pem",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a TLS address"), "{}", stderr(&o));
    let o = weft(&["serve", "--addr", "tls://127.0.0.1:0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("needs --tls-cert"), "{}", stderr(&o));
    let o = weft(&["call", "--addr", "dns://cart", "--method", "Echo"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("name:port"), "{}", stderr(&o));
}

#[test]
fn a_unixdir_address_finds_the_servers_in_a_directory() {
    let dir = tmp("unixdir");
    let sock = format!("unix://{}", dir.join("one.sock").display());
    let _server = serve(&["--addr", &sock, "--name", "one"]);
    let addr = format!("unixdir://{}", dir.display());
    let o = weft(&["call", "--addr", &addr, "--method", "Who"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout, b"one");
    let o = weft(&["bench", "--addr", &addr, "-n", "20", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let point: serde_json::Value =
        serde_json::from_slice(o.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(point["transport"], "unix");
}

#[test]
fn bench_tls_reports_plaintext_and_tls() {
    let o = weft(&["bench", "--tls", "-n", "50", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let points: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let transports: Vec<_> = points
        .iter()
        .map(|p| p["transport"].as_str().unwrap())
        .collect();
    assert_eq!(transports, ["tcp", "tls"]);
    assert!(
        points.iter().all(|p| p["calls"].as_u64() == Some(50)),
        "{points:?}"
    );
}

#[test]
fn a_unixdir_address_over_mutual_tls() {
    let dir = tmp("unixdir-tls");
    let pkis = tmp("unixdir-tls-pki");
    let (server_pki, client_pki) = (pki(&pkis, "server"), pki(&pkis, "client"));
    let sock = format!("tls+unix://{}", dir.join("one.sock").display());
    let _server = serve(&[
        "--addr",
        &sock,
        "--name",
        "one",
        "--tls-cert",
        s(&server_pki.cert),
        "--tls-key",
        s(&server_pki.key),
        "--tls-client-ca",
        s(&client_pki.ca),
    ]);
    let addr = format!("unixdir://{}", dir.display());
    let o = weft(&[
        "call",
        "--addr",
        &addr,
        "--method",
        "Who",
        "--tls-ca",
        s(&server_pki.ca),
        "--tls-cert",
        s(&client_pki.cert),
        "--tls-key",
        s(&client_pki.key),
        "--tls-server-name",
        "127.0.0.1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout, b"one");
    // Without the flags the same directory is plaintext, which the server
    // refuses; the error says TLS.
    let o = weft(&["call", "--addr", &addr, "--method", "Who"]);
    assert_eq!(o.status.code(), Some(6));
    assert!(stderr(&o).contains("TLS"), "{}", stderr(&o));
}

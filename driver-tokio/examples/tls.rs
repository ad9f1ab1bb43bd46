//! Mutual TLS: `cargo run -p weft-tokio --features tls --example tls`.
//!
//! Makes a throwaway CA for servers and one for clients (in a deployment
//! these are PEM files), serves over TLS requiring a client certificate,
//! and calls with one. A client whose certificate another CA signed is
//! refused, with an error that says TLS and why.

use bytes::Bytes;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use weft_tokio::tls::{ClientTls, Identity, RootCerts, ServerTls, TlsEndpoint};
use weft_tokio::{
    CallOptions, ClientOptions, ConstantResolver, HandlerMap, Listener, MethodKey, Request,
};

/// A self-signed CA: its certificate (PEM) and its key.
fn ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    (params.self_signed(&key).unwrap(), key)
}

/// A certificate for `name` signed by `ca`, as PEM chain + key.
fn issue(ca: &(rcgen::Certificate, KeyPair), name: &str) -> Identity {
    let params = CertificateParams::new(vec![name.to_string()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.0, &ca.1).unwrap();
    Identity::from_pem(cert.pem(), key.serialize_pem()).unwrap()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server_ca = ca("example server CA");
    let client_ca = ca("example client CA");
    let server_roots = RootCerts::from_pem(server_ca.0.pem())?;
    let client_roots = RootCerts::from_pem(client_ca.0.pem())?;

    // The server presents a certificate for 127.0.0.1 and requires clients
    // to present one that `client_ca` signed.
    let server_tls = ServerTls::new(&issue(&server_ca, "127.0.0.1"), Some(&client_roots))?;
    let listener = Listener::bind(&weft_tokio::tcp("127.0.0.1:0"))
        .await?
        .tls(&server_tls);
    let endpoint = listener.local_endpoint()?;
    println!("serving on {endpoint}");
    let mut handlers = HandlerMap::new();
    handlers.set("example.Secure", "Echo", |req: Request| async move {
        Ok(req.args)
    });
    tokio::spawn(weft_tokio::serve(listener, handlers, Default::default()));
    let key = MethodKey::new("example.Secure", "Echo");

    // A client that trusts the server's CA and has a certificate from the
    // client CA.
    let client_tls = ClientTls::new(&server_roots, Some(&issue(&client_ca, "client")))?;
    let ep = TlsEndpoint::new(endpoint.clone(), client_tls);
    let conn = weft_tokio::connect(ConstantResolver::new([ep]), ClientOptions::default()).await?;
    let out = conn
        .call(key, Bytes::from_static(b"secret"), CallOptions::default())
        .await?;
    assert_eq!(&out[..], b"secret");
    println!("mutual TLS call: {:?}", out);

    // A client with a certificate from a CA the server does not trust.
    let stranger = ca("a stranger's CA");
    let client_tls = ClientTls::new(&server_roots, Some(&issue(&stranger, "client")))?;
    let ep = TlsEndpoint::new(endpoint.clone(), client_tls);
    let conn = weft_tokio::connect(ConstantResolver::new([ep]), ClientOptions::default()).await?;
    let err = conn
        .call(key, Bytes::new(), CallOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("TLS"), "{err}");
    println!("refused: {err}");
    Ok(())
}

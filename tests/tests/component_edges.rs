//! Typed components at their edges, across drivers: argument names the
//! generated code also uses, a raw-identifier method, a failed method whose
//! result type has no decodable zero value, and an error with no entries.
#![allow(missing_docs)] // the generated traits and the test's own

use std::sync::Arc;
use weft_tokio::codec::ErrorList;
use weft_tokio::component::EMPTY_ERROR;
use weft_tokio::{ComponentError, MethodKey, NetEndpoint};

/// Go: `type Kind uint8` with constants from `iota + 1`: no variant 0, so
/// Go's zero value does not decode as a `Kind`.
#[derive(Debug, Clone, Copy, PartialEq, weft_tokio::Encode, weft_tokio::Decode)]
#[repr(u8)]
pub enum Kind {
    A = 1,
    B = 2,
}

#[weft_tokio::component(name = "github.com/acme/edge/Edge")]
pub trait Edge {
    /// Every name the generated client and server use for themselves.
    async fn names(
        &self,
        req: String,
        dec: u32,
        imp: u8,
        enc: bool,
        handlers: String,
    ) -> Result<String, ErrorList>;
    async fn with_context(
        &self,
        ctx: &weft_tokio::Request,
        req: String,
    ) -> Result<String, ErrorList>;
    async fn r#match(&self, results: String) -> Result<String, ErrorList>;
    async fn kind(&self, fail: bool) -> Result<Kind, ErrorList>;
    async fn empty_error(&self) -> Result<u64, ErrorList>;
}

/// A component written by a `macro_rules!`: its `$t:ty` fragments reach
/// the attribute wrapped in invisible groups, which must read as the
/// types they hold (this compiles, and is served below).
macro_rules! component_of {
    ($name:ident, $req:ty, $arg:ty, $ret:ty) => {
        #[weft_tokio::component(name = "github.com/acme/edge/Macro")]
        pub trait $name {
            async fn get(&self, ctx: $req, key: $arg) -> $ret;
        }
    };
}

component_of!(
    FromMacro,
    &weft_tokio::Request,
    String,
    Result<String, ErrorList>
);

struct Macro;

impl FromMacro for Macro {
    async fn get(&self, _ctx: &weft_tokio::Request, key: String) -> Result<String, ErrorList> {
        Ok(key)
    }
}

mod blocking {
    use super::Kind;
    use weft_mio::codec::ErrorList;

    #[weft_mio::component(name = "github.com/acme/edge/Edge")]
    pub trait Edge {
        fn names(
            &self,
            req: String,
            dec: u32,
            imp: u8,
            enc: bool,
            handlers: String,
        ) -> Result<String, ErrorList>;
        fn with_context(&self, ctx: &weft_mio::Request, req: String) -> Result<String, ErrorList>;
        fn r#match(&self, results: String) -> Result<String, ErrorList>;
        fn kind(&self, fail: bool) -> Result<Kind, ErrorList>;
        fn empty_error(&self) -> Result<u64, ErrorList>;
    }
}

fn names(req: String, dec: u32, imp: u8, enc: bool, handlers: String) -> String {
    format!("{req} {dec} {imp} {enc} {handlers}")
}

fn kind(fail: bool) -> Result<Kind, ErrorList> {
    if fail {
        Err(ErrorList::new("nope"))
    } else {
        Ok(Kind::B)
    }
}

fn no_entries() -> ErrorList {
    ErrorList {
        entries: Vec::new(),
    }
}

struct AsyncEdge;

impl Edge for AsyncEdge {
    async fn names(
        &self,
        req: String,
        dec: u32,
        imp: u8,
        enc: bool,
        handlers: String,
    ) -> Result<String, ErrorList> {
        Ok(names(req, dec, imp, enc, handlers))
    }
    async fn with_context(
        &self,
        ctx: &weft_tokio::Request,
        req: String,
    ) -> Result<String, ErrorList> {
        Ok(format!("{req} {}", ctx.deadline.is_some()))
    }
    async fn r#match(&self, results: String) -> Result<String, ErrorList> {
        Ok(results)
    }
    async fn kind(&self, fail: bool) -> Result<Kind, ErrorList> {
        kind(fail)
    }
    async fn empty_error(&self) -> Result<u64, ErrorList> {
        Err(no_entries())
    }
}

struct BlockingEdge;

impl blocking::Edge for BlockingEdge {
    fn names(
        &self,
        req: String,
        dec: u32,
        imp: u8,
        enc: bool,
        handlers: String,
    ) -> Result<String, ErrorList> {
        Ok(names(req, dec, imp, enc, handlers))
    }
    fn with_context(&self, ctx: &weft_mio::Request, req: String) -> Result<String, ErrorList> {
        Ok(format!("{req} {}", ctx.deadline.is_some()))
    }
    fn r#match(&self, results: String) -> Result<String, ErrorList> {
        Ok(results)
    }
    fn kind(&self, fail: bool) -> Result<Kind, ErrorList> {
        kind(fail)
    }
    fn empty_error(&self) -> Result<u64, ErrorList> {
        Err(no_entries())
    }
}

fn local() -> NetEndpoint {
    "tcp://127.0.0.1:0".parse().unwrap()
}

fn app_message<T: std::fmt::Debug>(r: Result<T, ComponentError<ErrorList>>) -> String {
    match r {
        Err(ComponentError::App(e)) => e.to_string(),
        other => panic!("expected an application error, got {other:?}"),
    }
}

#[test]
fn tokio_server_mio_client() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt.block_on(weft_tokio::Listener::bind(&local())).unwrap();
    let endpoint = listener.local_endpoint().unwrap();
    let mut h = weft_tokio::HandlerMap::new();
    EdgeServer::register(&mut h, AsyncEdge);
    FromMacroServer::register(&mut h, Macro);
    let shutdown = weft_tokio::Shutdown::new();
    rt.spawn(weft_tokio::serve_with_shutdown(
        listener,
        h,
        Default::default(),
        shutdown.clone(),
    ));
    let conn = weft_mio::Client::connect(
        weft_mio::ConstantResolver::new([endpoint]),
        Default::default(),
    )
    .unwrap();
    // `r#match` is `Match` on the wire, as Go names it.
    let raw = conn
        .call(
            MethodKey::new("github.com/acme/edge/Edge", "Match"),
            weft_tokio::codec::encode("m"),
            Default::default(),
        )
        .unwrap();
    assert_eq!(weft_tokio::codec::decode::<String>(&raw).unwrap(), "m");
    let raw = conn
        .call(
            MethodKey::new("github.com/acme/edge/Macro", "Get"),
            weft_tokio::codec::encode("k"),
            Default::default(),
        )
        .unwrap();
    assert_eq!(weft_tokio::codec::decode::<String>(&raw).unwrap(), "k");
    let client = blocking::EdgeBlockingClient::new(conn);
    assert_eq!(
        client.names("r".into(), 1, 2, true, "h".into()).unwrap(),
        "r 1 2 true h"
    );
    assert_eq!(client.with_context("r".into()).unwrap(), "r false");
    assert_eq!(client.r#match("x".into()).unwrap(), "x");
    assert_eq!(client.kind(false).unwrap(), Kind::B);
    assert_eq!(app_message(client.kind(true)), "nope");
    assert_eq!(app_message(client.empty_error()), EMPTY_ERROR);
    shutdown.immediate();
}

#[test]
fn mio_server_tokio_client() {
    let mut h = weft_mio::HandlerMap::new();
    blocking::EdgeServer::register(&mut h, BlockingEdge);
    let server = weft_mio::Server::bind(&local(), h, Default::default()).unwrap();
    let endpoint = server.local_endpoint().clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let conn = weft_tokio::connect(
            weft_tokio::ConstantResolver::new([endpoint]),
            Default::default(),
        )
        .await
        .unwrap();
        let client = Arc::new(EdgeClient::new(conn));
        assert_eq!(
            client
                .names("r".into(), 1, 2, true, "h".into())
                .await
                .unwrap(),
            "r 1 2 true h"
        );
        assert_eq!(client.with_context("r".into()).await.unwrap(), "r false");
        assert_eq!(client.r#match("x".into()).await.unwrap(), "x");
        assert_eq!(client.kind(false).await.unwrap(), Kind::B);
        assert_eq!(app_message(client.kind(true).await), "nope");
        assert_eq!(app_message(client.empty_error().await), EMPTY_ERROR);
    });
}

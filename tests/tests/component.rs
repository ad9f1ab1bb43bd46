//! Typed components over real sockets: a component served on one driver
//! and called from the other through the generated clients, and the bytes
//! the generated code puts on the wire compared with Go's.
#![allow(missing_docs)] // the generated traits and the test's own

use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use weft_tokio::codec::ErrorList;
use weft_tokio::component::StubOptions;
use weft_tokio::{CallError, CallOptions, ComponentError, MethodKey, NetEndpoint};

const CART: &str = "github.com/acme/shop/Cart";

/// An argument with nested slices and maps.
#[derive(Debug, Clone, PartialEq, Default, weft_tokio::Encode, weft_tokio::Decode)]
pub struct Item {
    sku: String,
    quantity: u32,
    tags: Vec<String>,
    prices: BTreeMap<String, Vec<i64>>,
    gift: Option<Box<Item>>,
}

fn routing_key(user: &str) -> String {
    user.to_owned()
}

#[weft_tokio::component(name = "github.com/acme/shop/Cart")]
pub trait Cart {
    async fn add_item(&self, user: String, item: Item) -> Result<u64, ErrorList>;
    #[weft(route = routing_key)]
    async fn items(&self, user: String) -> Result<Vec<Item>, ErrorList>;
    #[weft(not_retriable)]
    async fn checkout(&self, user: String) -> Result<u64, ErrorList>;
    async fn sleep(&self, millis: u64) -> Result<(), ErrorList>;
    /// Takes the call's context: the caller's metadata `user` and whether
    /// it set a deadline.
    async fn whoami(
        &self,
        req: &weft_tokio::Request,
        greeting: String,
    ) -> Result<String, ErrorList>;
}

fn whoami(req: &weft_tokio::Request, greeting: String) -> Result<String, ErrorList> {
    let user = req
        .metadata
        .as_ref()
        .and_then(|m| m.get("user"))
        .unwrap_or("nobody");
    Ok(format!(
        "{greeting} {user}, deadline: {}",
        req.deadline.is_some()
    ))
}

/// The same component for the blocking driver.
mod blocking {
    use super::Item;
    use weft_mio::codec::ErrorList;

    #[weft_mio::component(name = "github.com/acme/shop/Cart")]
    pub trait Cart {
        fn add_item(&self, user: String, item: Item) -> Result<u64, ErrorList>;
        fn items(&self, user: String) -> Result<Vec<Item>, ErrorList>;
        #[weft(not_retriable)]
        fn checkout(&self, user: String) -> Result<u64, ErrorList>;
        fn sleep(&self, millis: u64) -> Result<(), ErrorList>;
        fn whoami(&self, req: &weft_mio::Request, greeting: String) -> Result<String, ErrorList>;
    }
}

#[derive(Default)]
struct Shop {
    carts: std::sync::Mutex<BTreeMap<String, Vec<Item>>>,
    adds: AtomicUsize,
    checkouts: AtomicUsize,
    dropped: Notify,
}

impl Shop {
    fn add(&self, user: String, item: Item) -> Result<u64, ErrorList> {
        self.adds.fetch_add(1, Ordering::SeqCst);
        if item.quantity == 0 {
            return Err(ErrorList::new(format!("no quantity for {}", item.sku)));
        }
        let mut carts = self.carts.lock().unwrap();
        let cart = carts.entry(user).or_default();
        cart.push(item);
        Ok(cart.len() as u64)
    }
    fn items(&self, user: String) -> Result<Vec<Item>, ErrorList> {
        Ok(self
            .carts
            .lock()
            .unwrap()
            .get(&user)
            .cloned()
            .unwrap_or_default())
    }
    fn checkout(&self, user: String) -> Result<u64, ErrorList> {
        self.checkouts.fetch_add(1, Ordering::SeqCst);
        match self.carts.lock().unwrap().remove(&user) {
            Some(items) => Ok(items.len() as u64),
            None => Err(ErrorList::new(format!("empty cart: {user}"))),
        }
    }
}

struct AsyncShop(Arc<Shop>);

/// Tells the test when the server dropped a handler's future.
struct DropSignal(Arc<Shop>);
impl Drop for DropSignal {
    fn drop(&mut self) {
        self.0.dropped.notify_one();
    }
}

impl Cart for AsyncShop {
    async fn add_item(&self, user: String, item: Item) -> Result<u64, ErrorList> {
        self.0.add(user, item)
    }
    async fn items(&self, user: String) -> Result<Vec<Item>, ErrorList> {
        self.0.items(user)
    }
    async fn checkout(&self, user: String) -> Result<u64, ErrorList> {
        self.0.checkout(user)
    }
    async fn sleep(&self, millis: u64) -> Result<(), ErrorList> {
        let _signal = DropSignal(self.0.clone());
        tokio::time::sleep(Duration::from_millis(millis)).await;
        Ok(())
    }
    async fn whoami(
        &self,
        req: &weft_tokio::Request,
        greeting: String,
    ) -> Result<String, ErrorList> {
        whoami(req, greeting)
    }
}

struct BlockingShop(Arc<Shop>);

impl blocking::Cart for BlockingShop {
    fn add_item(&self, user: String, item: Item) -> Result<u64, ErrorList> {
        self.0.add(user, item)
    }
    fn items(&self, user: String) -> Result<Vec<Item>, ErrorList> {
        self.0.items(user)
    }
    fn checkout(&self, user: String) -> Result<u64, ErrorList> {
        self.0.checkout(user)
    }
    fn sleep(&self, millis: u64) -> Result<(), ErrorList> {
        std::thread::sleep(Duration::from_millis(millis));
        Ok(())
    }
    fn whoami(&self, req: &weft_mio::Request, greeting: String) -> Result<String, ErrorList> {
        whoami(req, greeting)
    }
}

/// A running server; stopped when dropped.
#[allow(dead_code)] // held for their Drop
enum Server {
    Tokio(tokio::runtime::Runtime, weft_tokio::Shutdown),
    Mio(weft_mio::Server),
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn local() -> NetEndpoint {
    "tcp://127.0.0.1:0".parse().unwrap()
}

fn serve_tokio(handlers: weft_tokio::HandlerMap) -> (Server, NetEndpoint) {
    let rt = runtime();
    let listener = rt.block_on(weft_tokio::Listener::bind(&local())).unwrap();
    let endpoint = listener.local_endpoint().unwrap();
    let shutdown = weft_tokio::Shutdown::new();
    rt.spawn(weft_tokio::serve_with_shutdown(
        listener,
        handlers,
        Default::default(),
        shutdown.clone(),
    ));
    (Server::Tokio(rt, shutdown), endpoint)
}

fn serve_mio(handlers: weft_mio::HandlerMap) -> (Server, NetEndpoint) {
    let server = weft_mio::Server::bind(&local(), handlers, Default::default()).unwrap();
    let endpoint = server.local_endpoint().clone();
    (Server::Mio(server), endpoint)
}

impl Drop for Server {
    fn drop(&mut self) {
        match self {
            Server::Tokio(_, shutdown) => shutdown.immediate(),
            Server::Mio(_) => {} // stops when dropped
        }
    }
}

fn serve(on: &str, shop: &Arc<Shop>) -> (Server, NetEndpoint) {
    match on {
        "tokio" => {
            let mut h = weft_tokio::HandlerMap::new();
            CartServer::register(&mut h, AsyncShop(shop.clone()));
            serve_tokio(h)
        }
        _ => {
            let mut h = weft_mio::HandlerMap::new();
            blocking::CartServer::register(&mut h, BlockingShop(shop.clone()));
            serve_mio(h)
        }
    }
}

fn mio_client(endpoint: &NetEndpoint) -> weft_mio::Client {
    weft_mio::Client::connect(
        weft_mio::ConstantResolver::new([endpoint.clone()]),
        Default::default(),
    )
    .unwrap()
}

async fn tokio_client(endpoint: &NetEndpoint) -> weft_tokio::Connection {
    weft_tokio::connect(
        weft_tokio::ConstantResolver::new([endpoint.clone()]),
        Default::default(),
    )
    .await
    .unwrap()
}

fn item(sku: &str, quantity: u32) -> Item {
    Item {
        sku: sku.into(),
        quantity,
        tags: vec!["red".into(), String::new()],
        prices: BTreeMap::from([("eur".into(), vec![100, -5]), ("usd".into(), vec![])]),
        gift: Some(Box::new(Item {
            sku: "card".into(),
            ..Item::default()
        })),
    }
}

fn app_message<T: std::fmt::Debug>(r: Result<T, ComponentError<ErrorList>>) -> String {
    match r {
        Err(ComponentError::App(e)) => e.to_string(),
        other => panic!("expected an application error, got {other:?}"),
    }
}

#[test]
fn tokio_server_mio_client() {
    let shop = Arc::new(Shop::default());
    let (_server, endpoint) = serve("tokio", &shop);
    let client = CartBlockingClient::new(mio_client(&endpoint));
    assert_eq!(client.add_item("ann".into(), item("mug", 2)).unwrap(), 1);
    assert_eq!(client.add_item("ann".into(), item("pen", 1)).unwrap(), 2);
    assert_eq!(
        client.items("ann".into()).unwrap(),
        [item("mug", 2), item("pen", 1)]
    );
    assert_eq!(
        app_message(client.add_item("ann".into(), item("cup", 0))),
        "no quantity for cup"
    );
    assert_eq!(client.checkout("ann".into()).unwrap(), 2);
    assert_eq!(
        app_message(client.checkout("ann".into())),
        "empty cart: ann"
    );
}

#[test]
fn mio_server_tokio_client() {
    let shop = Arc::new(Shop::default());
    let (_server, endpoint) = serve("mio", &shop);
    runtime().block_on(async {
        let client = CartClient::new(tokio_client(&endpoint).await);
        assert_eq!(
            client.add_item("bo".into(), item("mug", 3)).await.unwrap(),
            1
        );
        assert_eq!(client.items("bo".into()).await.unwrap(), [item("mug", 3)]);
        assert_eq!(
            app_message(client.add_item("bo".into(), item("cup", 0)).await),
            "no quantity for cup"
        );
        // A deadline ends the call; the error says so.
        let hurried = CartClient::new(client.conn().clone()).with_options(StubOptions {
            timeout: Some(Duration::from_millis(50)),
            ..StubOptions::default()
        });
        match hurried.sleep(500).await {
            Err(ComponentError::Call(CallError::DeadlineExceeded)) => {}
            other => panic!("expected a deadline, got {other:?}"),
        }
    });
}

#[test]
fn dropping_a_typed_call_cancels_it_on_the_server() {
    let shop = Arc::new(Shop::default());
    let (_server, endpoint) = serve("tokio", &shop);
    runtime().block_on(async {
        let client = CartClient::new(tokio_client(&endpoint).await);
        let dropped = shop.dropped.notified();
        tokio::pin!(dropped);
        dropped.as_mut().enable();
        let call = client.sleep(60_000);
        // Give up on the call; the server must drop the handler's future
        // long before its minute is up.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), call)
                .await
                .is_err()
        );
        tokio::time::timeout(Duration::from_secs(10), dropped)
            .await
            .expect("the server never dropped the cancelled handler");
    });
}

#[test]
fn injected_retries_repeat_only_retriable_methods() {
    let shop = Arc::new(Shop::default());
    let (_server, endpoint) = serve("mio", &shop);
    let client = CartBlockingClient::new(mio_client(&endpoint)).with_options(StubOptions {
        inject_retries: 2,
        ..StubOptions::default()
    });
    // Go's injectRetries: the call is made three times, the last result
    // returned.
    assert_eq!(client.add_item("cy".into(), item("mug", 1)).unwrap(), 3);
    assert_eq!(shop.adds.load(Ordering::SeqCst), 3);
    // Not retriable: once.
    assert_eq!(client.checkout("cy".into()).unwrap(), 3);
    assert_eq!(shop.checkouts.load(Ordering::SeqCst), 1);
}

#[test]
fn undecodable_arguments_are_a_handler_error_and_ready_answers() {
    let shop = Arc::new(Shop::default());
    for on in ["tokio", "mio"] {
        let (_server, endpoint) = serve(on, &shop);
        let client = mio_client(&endpoint);
        // A string length with no string: a type-3 error response, as Go's
        // server stub sends when its decoder fails.
        let err = client
            .call(
                MethodKey::new(CART, "AddItem"),
                Bytes::from_static(b"\x05\0\0\0ab"),
                CallOptions::default(),
            )
            .unwrap_err();
        match &err {
            CallError::Remote(e) => assert!(
                e.message().contains("decoding the arguments of AddItem"),
                "{on}: {e}"
            ),
            other => panic!("{on}: expected a remote error, got {other:?}"),
        }
        // Go callers ask `ready` before the first call.
        let ready = client
            .call(
                MethodKey::new(CART, "ready"),
                Bytes::new(),
                CallOptions::default(),
            )
            .unwrap();
        assert!(ready.is_empty(), "{on}");
    }
}

// --- Byte for byte against Go's generated stubs -------------------------

fn golden(name: &str) -> Bytes {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../proto/tests/golden/codegen/calls/"
    );
    Bytes::from(std::fs::read(format!("{dir}{name}")).unwrap())
}

#[weft_tokio::component(name = "github.com/ServiceWeaver/weaver/examples/reverser/Reverser")]
pub trait Reverser {
    async fn reverse(&self, s: String) -> Result<String, ErrorList>;
}

struct Rev;
impl Reverser for Rev {
    async fn reverse(&self, s: String) -> Result<String, ErrorList> {
        if s == "fail" {
            return Err(ErrorList::new("cannot reverse"));
        }
        Ok(s.chars().rev().collect())
    }
}

const REVERSER: &str = "github.com/ServiceWeaver/weaver/examples/reverser/Reverser";

#[test]
fn the_server_answers_go_stub_bytes_with_go_stub_bytes() {
    let mut h = weft_tokio::HandlerMap::new();
    ReverserServer::register(&mut h, Rev);
    let (_server, endpoint) = serve_tokio(h);
    let client = mio_client(&endpoint);
    for case in ["hello", "app_error"] {
        let args = golden(&format!("reverser.Reverse.{case}.args.bin"));
        let results = client
            .call(
                MethodKey::new(REVERSER, "Reverse"),
                args,
                CallOptions::default(),
            )
            .unwrap();
        assert_eq!(
            results,
            golden(&format!("reverser.Reverse.{case}.results.bin")),
            "{case}"
        );
    }
}

#[test]
fn the_client_sends_go_stub_bytes_and_reads_go_replies() {
    // A stand-in for the Go server: it checks the request bytes and
    // answers with what Go's server stub answered.
    let mut h = weft_tokio::HandlerMap::new();
    h.set(REVERSER, "Reverse", |req: weft_tokio::Request| async move {
        for case in ["hello", "app_error"] {
            if req.args == golden(&format!("reverser.Reverse.{case}.args.bin")) {
                return Ok(golden(&format!("reverser.Reverse.{case}.results.bin")));
            }
        }
        Err(weft_tokio::HandlerError::new(format!(
            "unexpected args {:02x?}",
            &req.args[..]
        )))
    });
    let (_server, endpoint) = serve_tokio(h);
    let client = ReverserBlockingClient::new(mio_client(&endpoint));
    assert_eq!(client.reverse("hello, 世界".into()).unwrap(), "界世 ,olleh");
    assert_eq!(app_message(client.reverse("fail".into())), "cannot reverse");
}

#[test]
fn a_routed_method_carries_its_shard_key_and_others_none() {
    let shop = Arc::new(Shop::default());
    let (_server, endpoint) = serve("mio", &shop);
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let opts = weft_mio::ClientOptions {
        balancer: Box::new(weft_mio::BalancerFn::new(move |_, opts: &CallOptions| {
            log.lock().unwrap().push((opts.shard_key, opts.retry));
            Some(0)
        })),
        ..Default::default()
    };
    let conn =
        weft_mio::Client::connect(weft_mio::ConstantResolver::new([endpoint]), opts).unwrap();
    let client = CartBlockingClient::new(conn);
    client.items("dee".into()).unwrap();
    client.add_item("dee".into(), item("mug", 1)).unwrap();
    let _ = client.checkout("dee".into());
    let seen = seen.lock().unwrap().clone();
    // Items is routed by the user (Go's router: the hash of the encoded
    // key); AddItem is not routed; Checkout is not retriable.
    assert_eq!(
        seen,
        [
            (weft_tokio::codec::shard_key("dee"), true),
            (0, true),
            (0, false)
        ]
    );
}

#[test]
fn implementations_see_the_calls_context() {
    let shop = Arc::new(Shop::default());
    let mut metadata = weft_tokio::Metadata::new();
    metadata.insert("user", "ann");
    let opts = StubOptions {
        metadata: Some(metadata),
        timeout: Some(Duration::from_secs(30)),
        ..StubOptions::default()
    };
    for on in ["tokio", "mio"] {
        let (_server, endpoint) = serve(on, &shop);
        let client = CartBlockingClient::new(mio_client(&endpoint));
        // The context never goes on the wire: the client method has only
        // the encoded argument.
        assert_eq!(
            client.whoami("hi".into()).unwrap(),
            "hi nobody, deadline: false",
            "{on}"
        );
        let client = client.with_options(opts.clone());
        assert_eq!(
            client.whoami("hi".into()).unwrap(),
            "hi ann, deadline: true",
            "{on}"
        );
    }
}

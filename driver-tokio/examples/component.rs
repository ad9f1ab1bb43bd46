//! A typed component: `cargo run -p weft-tokio --example component`.
//!
//! A trait marked `#[component]` becomes a typed client (`CartClient`) and
//! a server registration (`CartServer::register`) that speak the bytes of
//! Go Service Weaver's generated stubs: a Go weavelet could serve this
//! component or call it, given the same name and signatures.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use weft_tokio::codec::{CodecError, Decode, Decoder, Encode, Encoder, ErrorList, RegisteredError};
use weft_tokio::{ComponentError, ConstantResolver, HandlerMap, Listener};

/// An argument: any struct whose fields have an encoding (Go's
/// `weaver.AutoMarshal` layout).
#[derive(Debug, Clone, PartialEq, weft_tokio::Encode, weft_tokio::Decode)]
pub struct Item {
    sku: String,
    quantity: u32,
    options: BTreeMap<String, String>,
}

/// An error a caller can match on, as a Go component returns a registered
/// `*OutOfStock` (an AutoMarshal struct that implements `error`).
#[derive(Debug, Clone, PartialEq, weft_tokio::Encode, weft_tokio::Decode)]
pub struct OutOfStock {
    sku: String,
    available: u32,
}

/// The component's registered error types, by Go type key.
#[derive(Debug, Clone, PartialEq)]
pub enum ShopError {
    /// Fewer left than asked for.
    OutOfStock(OutOfStock),
}

const OUT_OF_STOCK: &str = "*shop.OutOfStock(github.com/acme/shop)";

impl fmt::Display for ShopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ShopError::OutOfStock(e) = self;
        write!(f, "out of stock: {} ({} left)", e.sku, e.available)
    }
}

impl RegisteredError for ShopError {
    fn type_key(&self) -> &str {
        OUT_OF_STOCK
    }
    fn encode_fields(&self, enc: &mut Encoder) {
        let ShopError::OutOfStock(e) = self;
        e.encode(enc);
    }
    fn decode_fields(key: &str, dec: &mut Decoder<'_>) -> Option<Result<Self, CodecError>> {
        (key == OUT_OF_STOCK).then(|| OutOfStock::decode(dec).map(ShopError::OutOfStock))
    }
}

/// Errors of the Cart component: plain messages or a registered type.
pub type CartError = ErrorList<ShopError>;

/// The component. Its name is the Go interface's full path; methods are
/// named in Go's style on the wire (`add_item` is `AddItem`).
#[weft_tokio::component(name = "github.com/acme/shop/Cart")]
pub trait Cart {
    /// Adds an item; returns the number of items in the cart.
    async fn add_item(&self, user: String, item: Item) -> Result<u64, CartError>;
    /// The items in a cart.
    async fn items(&self, user: String) -> Result<Vec<Item>, CartError>;
    /// Empties a cart; not retried after a communication error (Go's
    /// `weaver.NotRetriable`).
    #[weft(not_retriable)]
    async fn checkout(&self, user: String) -> Result<u64, CartError>;
}

#[derive(Default)]
struct Shop {
    carts: Mutex<BTreeMap<String, Vec<Item>>>,
}

impl Cart for Shop {
    async fn add_item(&self, user: String, item: Item) -> Result<u64, CartError> {
        if item.quantity > 3 {
            return Err(ErrorList::registered(ShopError::OutOfStock(OutOfStock {
                sku: item.sku,
                available: 3,
            })));
        }
        let mut carts = self.carts.lock().unwrap();
        let cart = carts.entry(user).or_default();
        cart.push(item);
        Ok(cart.len() as u64)
    }

    async fn items(&self, user: String) -> Result<Vec<Item>, CartError> {
        Ok(self
            .carts
            .lock()
            .unwrap()
            .get(&user)
            .cloned()
            .unwrap_or_default())
    }

    async fn checkout(&self, user: String) -> Result<u64, CartError> {
        match self.carts.lock().unwrap().remove(&user) {
            Some(items) => Ok(items.len() as u64),
            None => Err(ErrorList::new(format!("{user} has no cart"))),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Serve: every method, plus the `ready` method Go callers ask first.
    let mut handlers = HandlerMap::new();
    CartServer::register(&mut handlers, Shop::default());
    let listener = Listener::bind(&weft_tokio::tcp("127.0.0.1:0")).await?;
    let endpoint = listener.local_endpoint()?;
    tokio::spawn(weft_tokio::serve(listener, handlers, Default::default()));

    // Call, with typed arguments and results.
    let conn = weft_tokio::connect(ConstantResolver::new([endpoint]), Default::default()).await?;
    let cart = CartClient::new(conn);
    let mug = Item {
        sku: "mug".into(),
        quantity: 2,
        options: BTreeMap::from([("colour".into(), "blue".into())]),
    };
    assert_eq!(cart.add_item("ann".into(), mug.clone()).await?, 1);
    assert_eq!(cart.items("ann".into()).await?, std::slice::from_ref(&mug));

    // An application error arrives typed; a failed call would be
    // ComponentError::Call instead.
    let too_many = Item { quantity: 9, ..mug };
    match cart.add_item("ann".into(), too_many).await {
        Err(ComponentError::App(e)) => {
            let Some(ShopError::OutOfStock(o)) = e.registered_errors().next() else {
                panic!("{e}")
            };
            assert_eq!(o.available, 3);
            println!("add_item: {e}");
        }
        other => panic!("expected out of stock, got {other:?}"),
    }
    assert_eq!(cart.checkout("ann".into()).await?, 1);
    let err = cart.checkout("ann".into()).await.unwrap_err();
    assert_eq!(err.to_string(), "ann has no cart");
    println!("checkout again: {err}");
    Ok(())
}

//! weft-macros: `#[derive(Encode, Decode)]` and `#[component]`.
//!
//! The derives write a struct as Service Weaver's `weaver.AutoMarshal`
//! does (each field in declaration order, nothing else) and a fieldless
//! enum as its integer (the `#[repr]` type, Go's `int` without one).
//! `#[component]` turns a trait into a typed client and a server
//! registration that speak the bytes Go's generated stubs speak. Use them
//! through `weft-tokio` or `weft-mio`, which re-export them:
//!
//! ```
//! #[derive(weft_tokio::Encode, weft_tokio::Decode)]
//! struct Item { sku: String, quantity: u32 }
//!
//! #[weft_tokio::component(name = "github.com/acme/shop/Cart")]
//! trait Cart {
//!     async fn add_item(&self, user: String, item: Item) -> Result<(), weft_tokio::codec::ErrorList>;
//! }
//! // Generated: CartClient, CartBlockingClient, CartServer.
//! fn client(conn: weft_tokio::Connection) -> CartClient<weft_tokio::Connection> {
//!     CartClient::new(conn)
//! }
//! ```
//!
//! The full contract (attributes, generated items, errors) is documented on
//! [`component`] and in weft-tokio's `component` module, where the example
//! above compiles and runs.

mod component;
mod derive;
mod paths;

use proc_macro::TokenStream;

/// Derives `Encode` for a struct (its fields in order, as Go's
/// AutoMarshal) or a fieldless enum (its `#[repr]` integer; `i64`, Go's
/// `int`, without one).
#[proc_macro_derive(Encode)]
pub fn derive_encode(input: TokenStream) -> TokenStream {
    derive::encode(syn::parse_macro_input!(input)).into()
}

/// Derives `Decode`, the reverse of `Encode`. An enum value no variant has
/// fails with `CodecError::OutOfRange`.
#[proc_macro_derive(Decode)]
pub fn derive_decode(input: TokenStream) -> TokenStream {
    derive::decode(syn::parse_macro_input!(input)).into()
}

/// Makes a trait a Service Weaver component.
///
/// `#[component(name = "github.com/acme/shop/Cart")]` on `trait Cart`
/// (the name is the Go interface's full path) generates, next to the trait:
///
/// - `CartClient<C>`: `CartClient::new(conn)` over a `weft_tokio::Connection`
///   (async methods), and `CartBlockingClient<C>` over a `weft_mio::Client`
///   (blocking methods). Each method encodes its arguments, calls
///   `MethodKey::new(name, Method)` and decodes the results and the trailing
///   error list as Go's generated client stub does; it returns
///   `Result<T, ComponentError<E>>`.
/// - `CartServer::register(&mut handlers, implementation)`: Go's
///   `AddHandlers`, plus the `ready` method Go callers ask first.
///
/// Every method takes `&self`, optionally the call's `&Request` (its
/// deadline, metadata, trace context, peer and cancellation, as a Go
/// method's `ctx`; it never goes on the wire and client methods do not take
/// it), and named arguments, and returns
/// `Result<T, E>` where `E` is an application error
/// (`codec::AppError`, e.g. `codec::ErrorList`). All methods are `async fn`
/// (served on weft-tokio) or all are plain `fn` (served on weft-mio).
/// On the wire a method is named in Go's style (`add_item` is `AddItem`);
/// per method:
///
/// - `#[weft(name = "AddItem")]`: another wire name;
/// - `#[weft(not_retriable)]`: Go's `weaver.NotRetriable` (calls are not
///   retried after a communication error);
/// - `#[weft(route = path::to::fn)]`: a routed method; `fn` takes the
///   arguments by reference and returns the routing key, whose
///   `codec::shard_key` steers the balancer as Go's router does.
#[proc_macro_attribute]
pub fn component(attr: TokenStream, item: TokenStream) -> TokenStream {
    component::expand(attr.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

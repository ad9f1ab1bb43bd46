//! The generated clients against every call Service Weaver's own stubs
//! made (`proto/tests/golden/codegen/calls`): a stand-in server answers a
//! method only when the request carries exactly the arguments Go's client
//! stub sent, and replies with the bytes Go's server stub returned; the
//! typed client must then produce the value (or the error text) a Go
//! client saw.
#![allow(missing_docs)]

use bytes::Bytes;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use weft_tokio::codec::{
    self, CodecError, Complex, Decode, Decoder, Encode, Encoder, ErrorList, GoTime, Nilable,
    RegisteredError,
};
use weft_tokio::{ComponentError, NetEndpoint};

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../proto/tests/golden/codegen/"
);

#[derive(Debug, Clone, PartialEq, weft_tokio::Encode, weft_tokio::Decode)]
pub struct Inner {
    a: i32,
    b: String,
}

#[derive(Debug, Clone, Copy, PartialEq, weft_tokio::Encode, weft_tokio::Decode)]
pub struct Kind(u16);

#[derive(Debug, Clone, PartialEq, weft_tokio::Encode, weft_tokio::Decode)]
pub struct Record {
    name: String,
    count: i64,
    data: Nilable<Vec<u8>>,
    inner: Inner,
    items: Nilable<Vec<Inner>>,
    tags: Nilable<BTreeMap<String, i64>>,
    ptr: Option<i64>,
    next: Option<Inner>,
    wait: Duration,
    pair: [bool; 2],
    score: f64,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, weft_tokio::Encode, weft_tokio::Decode)]
pub struct KeyError {
    key: String,
}

#[derive(Debug, Clone, PartialEq, weft_tokio::Encode, weft_tokio::Decode)]
pub struct ConflictError {
    key: String,
    version: i64,
}

/// The Go error types the golden components register.
#[derive(Debug, Clone, PartialEq)]
pub enum GoError {
    NotFound(KeyError),
    Conflict(ConflictError),
    Custom(KeyError),
}

const NOT_FOUND: &str = "*weftgolden.NotFoundError(github.com/ServiceWeaver/weaver/weftgolden)";
const CONFLICT: &str = "*weftgolden.ConflictError(github.com/ServiceWeaver/weaver/weftgolden)";
const CUSTOM: &str =
    "*generate.customErrorValue(github.com/ServiceWeaver/weaver/weavertest/internal/generate)";

impl fmt::Display for GoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GoError::NotFound(e) => write!(f, "not found: {}", e.key),
            GoError::Conflict(e) => write!(f, "conflict on {} at version {}", e.key, e.version),
            GoError::Custom(e) => write!(f, "customError({})", e.key),
        }
    }
}

impl RegisteredError for GoError {
    fn type_key(&self) -> &str {
        match self {
            GoError::NotFound(_) => NOT_FOUND,
            GoError::Conflict(_) => CONFLICT,
            GoError::Custom(_) => CUSTOM,
        }
    }
    fn encode_fields(&self, enc: &mut Encoder) {
        match self {
            GoError::NotFound(e) | GoError::Custom(e) => e.encode(enc),
            GoError::Conflict(e) => e.encode(enc),
        }
    }
    fn decode_fields(key: &str, dec: &mut Decoder<'_>) -> Option<Result<Self, CodecError>> {
        Some(match key {
            NOT_FOUND => KeyError::decode(dec).map(GoError::NotFound),
            CONFLICT => ConflictError::decode(dec).map(GoError::Conflict),
            CUSTOM => KeyError::decode(dec).map(GoError::Custom),
            _ => return None,
        })
    }
}

type E = ErrorList<GoError>;

fn route_get(key: &str) -> (String, i64) {
    (key.to_owned(), key.len() as i64)
}

fn route_put(r: &Record) -> (String, i64) {
    (r.name.clone(), r.count)
}

fn route_file(file: &str, _msg: &str) -> String {
    file.to_owned()
}

#[weft_tokio::component(name = "github.com/ServiceWeaver/weaver/weftgolden/Golden")]
pub trait Golden {
    async fn array(&self, a: [i16; 3]) -> Result<[i16; 3], E>;
    async fn bytes(&self, b: Nilable<Vec<u8>>) -> Result<Nilable<Vec<u8>>, E>;
    async fn dict(
        &self,
        d: Nilable<BTreeMap<String, i64>>,
    ) -> Result<Nilable<BTreeMap<String, i64>>, E>;
    async fn echo(&self, s: String) -> Result<String, E>;
    #[weft(not_retriable)]
    async fn fail(&self, how: String) -> Result<i64, E>;
    #[weft(route = route_get)]
    async fn get(&self, key: String) -> Result<Option<Record>, E>;
    async fn int64s(&self, v: Nilable<Vec<i64>>) -> Result<Nilable<Vec<i64>>, E>;
    async fn join(&self, sep: String, parts: Nilable<Vec<String>>) -> Result<String, E>;
    async fn named(&self, k: Kind, d: Duration) -> Result<(Kind, Duration), E>;
    async fn ping(&self) -> Result<(), E>;
    async fn ptr(&self, p: Option<i64>) -> Result<Option<i64>, E>;
    #[weft(not_retriable, route = route_put)]
    async fn put(&self, r: Record) -> Result<i64, E>;
    #[allow(clippy::too_many_arguments)]
    async fn scalars(
        &self,
        a: bool,
        b: i8,
        c: i16,
        d: i32,
        e: i64,
        f: i64,
        g: u8,
        h: u16,
        i: u32,
        j: u64,
        k: u64,
        l: f32,
        m: f64,
        n: Complex<f32>,
        o: Complex<f64>,
        p: String,
    ) -> Result<String, E>;
    async fn scan(
        &self,
        prefix: String,
        limit: i32,
    ) -> Result<(Nilable<Vec<Record>>, Nilable<BTreeMap<String, i64>>), E>;
    async fn strings(&self, v: Nilable<Vec<String>>) -> Result<Nilable<Vec<String>>, E>;
    async fn time(&self, t: GoTime) -> Result<GoTime, E>;
}

#[weft_tokio::component(
    name = "github.com/ServiceWeaver/weaver/weavertest/internal/simple/Destination"
)]
pub trait Destination {
    #[weft(name = "GetAll")]
    async fn get_all(&self, file: String) -> Result<Nilable<Vec<String>>, E>;
    #[weft(name = "GetMetadata")]
    async fn get_metadata(&self) -> Result<Nilable<BTreeMap<String, String>>, E>;
    async fn getpid(&self) -> Result<i64, E>;
    #[weft(not_retriable)]
    async fn record(&self, file: String, msg: String) -> Result<(), E>;
    #[weft(not_retriable, route = route_file)]
    async fn routed_record(&self, file: String, msg: String) -> Result<(), E>;
    async fn update_metadata(&self) -> Result<(), E>;
}

#[weft_tokio::component(
    name = "github.com/ServiceWeaver/weaver/weavertest/internal/generate/testApp"
)]
pub trait TestApp {
    #[weft(name = "DivMod")]
    async fn div_mod(&self, a: i64, b: i64) -> Result<(i64, i64), E>;
    async fn get(&self, key: String, behavior: i64) -> Result<i64, E>;
    #[weft(name = "IncPointer")]
    async fn inc_pointer(&self, p: Option<i64>) -> Result<Option<i64>, E>;
}

#[weft_tokio::component(
    name = "github.com/ServiceWeaver/weaver/weavertest/internal/protos/PingPonger"
)]
pub trait PingPonger {
    async fn ping(&self, msg: Option<Vec<u8>>) -> Result<Option<Vec<u8>>, E>;
}

#[weft_tokio::component(name = "github.com/ServiceWeaver/weaver/examples/reverser/Reverser")]
pub trait Reverser {
    async fn reverse(&self, s: String) -> Result<String, E>;
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Serves every golden call: exact args in, Go's result bytes out.
fn stand_in(calls: &[Value]) -> (tokio::runtime::Runtime, NetEndpoint) {
    let mut table: HashMap<(String, String), HashMap<Vec<u8>, Bytes>> = HashMap::new();
    for c in calls {
        let key = (
            c["component"].as_str().unwrap().to_owned(),
            c["method"].as_str().unwrap().to_owned(),
        );
        let args = hex(c["args"]["hex"].as_str().unwrap());
        let results = Bytes::from(hex(c["results"]["hex"].as_str().unwrap()));
        table.entry(key).or_default().insert(args, results);
    }
    let mut handlers = weft_tokio::HandlerMap::new();
    for ((component, method), answers) in table {
        let answers = Arc::new(answers);
        handlers.set(&component, &method, move |req: weft_tokio::Request| {
            let answers = answers.clone();
            async move {
                answers.get(&req.args[..]).cloned().ok_or_else(|| {
                    weft_tokio::HandlerError::new(format!("no Go call sent {:02x?}", &req.args[..]))
                })
            }
        });
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(weft_tokio::Listener::bind(&weft_tokio::tcp("127.0.0.1:0")))
        .unwrap();
    let endpoint = listener.local_endpoint().unwrap();
    rt.spawn(weft_tokio::serve(listener, handlers, Default::default()));
    (rt, endpoint)
}

/// Compares a typed outcome with what a Go client saw.
fn check<T: PartialEq + fmt::Debug + Decode>(call: &Value, got: Result<T, ComponentError<E>>) {
    let id = call["id"].as_str().unwrap();
    let results = hex(call["results"]["hex"].as_str().unwrap());
    match (got, call["results"]["go_client_error_string"].as_str()) {
        (Ok(v), None) => assert_eq!(v, codec::decode::<T>(&results).unwrap(), "{id}"),
        (Err(ComponentError::App(e)), Some(go)) => assert_eq!(e.to_string(), go, "{id}"),
        (other, go) => panic!("{id}: got {other:?}, a Go client saw error {go:?}"),
    }
}

fn args<A: Decode>(call: &Value) -> A {
    codec::decode(&hex(call["args"]["hex"].as_str().unwrap())).unwrap()
}

#[test]
fn typed_clients_send_and_read_what_go_stubs_do() {
    let vectors: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{DIR}vectors.json")).unwrap())
            .unwrap();
    let calls = vectors["calls"].as_array().unwrap();
    let (rt, endpoint) = stand_in(calls);
    let mut checked = 0;
    rt.block_on(async {
        let conn = weft_tokio::connect(
            weft_tokio::ConstantResolver::new([endpoint]),
            Default::default(),
        )
        .await
        .unwrap();
        let golden = GoldenClient::new(conn.clone());
        let simple = DestinationClient::new(conn.clone());
        let generate = TestAppClient::new(conn.clone());
        let protos = PingPongerClient::new(conn.clone());
        let reverser = ReverserClient::new(conn.clone());
        for c in calls {
            // A nondeterministic result (a Go heap address) is compared by
            // its error text, which is deterministic.
            let id = c["id"].as_str().unwrap();
            let method: String = id.split('.').take(2).collect::<Vec<_>>().join(".");
            match method.as_str() {
                "reverser.Reverse" => check(c, reverser.reverse(args::<(String,)>(c).0).await),
                "simple.Getpid" => check(c, simple.getpid().await),
                "simple.Record" => {
                    let (f, m) = args(c);
                    check(c, simple.record(f, m).await)
                }
                "simple.RoutedRecord" => {
                    let (f, m) = args(c);
                    check(c, simple.routed_record(f, m).await)
                }
                "simple.GetAll" => check(c, simple.get_all(args::<(String,)>(c).0).await),
                "simple.GetMetadata" => check(c, simple.get_metadata().await),
                "simple.UpdateMetadata" => check(c, simple.update_metadata().await),
                "protos.Ping" => check(c, protos.ping(args::<(Option<Vec<u8>>,)>(c).0).await),
                "generate.Get" => {
                    let (k, b) = args(c);
                    check(c, generate.get(k, b).await)
                }
                "generate.IncPointer" => {
                    check(c, generate.inc_pointer(args::<(Option<i64>,)>(c).0).await)
                }
                "generate.DivMod" => {
                    let (a, b) = args(c);
                    check(c, generate.div_mod(a, b).await)
                }
                "golden.Ping" => check(c, golden.ping().await),
                "golden.Echo" => check(c, golden.echo(args::<(String,)>(c).0).await),
                "golden.Scalars" => {
                    let ((a, b, cc, d, e, f, g, h), (i, j, k, l, m, n, o, p)) = args(c);
                    check(
                        c,
                        golden
                            .scalars(a, b, cc, d, e, f, g, h, i, j, k, l, m, n, o, p)
                            .await,
                    )
                }
                "golden.Bytes" => check(c, golden.bytes(args::<(Nilable<Vec<u8>>,)>(c).0).await),
                "golden.Strings" => check(
                    c,
                    golden.strings(args::<(Nilable<Vec<String>>,)>(c).0).await,
                ),
                "golden.Int64s" => check(c, golden.int64s(args::<(Nilable<Vec<i64>>,)>(c).0).await),
                "golden.Dict" => check(
                    c,
                    golden
                        .dict(args::<(Nilable<BTreeMap<String, i64>>,)>(c).0)
                        .await,
                ),
                "golden.Ptr" => check(c, golden.ptr(args::<(Option<i64>,)>(c).0).await),
                "golden.Array" => check(c, golden.array(args::<([i16; 3],)>(c).0).await),
                "golden.Named" => {
                    let (k, d) = args(c);
                    check(c, golden.named(k, d).await)
                }
                "golden.Time" => check(c, golden.time(args::<(GoTime,)>(c).0).await),
                "golden.Put" => check(c, golden.put(args::<(Record,)>(c).0).await),
                "golden.Get" => check(c, golden.get(args::<(String,)>(c).0).await),
                "golden.Scan" => {
                    let (p, l) = args(c);
                    check(c, golden.scan(p, l).await)
                }
                "golden.Join" => {
                    let (s, p) = args(c);
                    check(c, golden.join(s, p).await)
                }
                "golden.Fail" => check(c, golden.fail(args::<(String,)>(c).0).await),
                other => panic!("no client for {other}"),
            }
            checked += 1;
        }
    });
    assert_eq!(checked, 60);
}

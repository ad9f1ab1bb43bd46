//! Service Weaver's argument encoding against the bytes its own Go code
//! wrote (`tests/golden/codegen`, see its README): every value, error list
//! and generated-stub call decodes into Rust types and re-encodes to the
//! same bytes.

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};
use weft_macros::{Decode, Encode};
use weft_proto::codec::{
    self, AppError, CodecError, Complex, Decode, Decoder, Encode, Encoder, ErrorList, GoTime,
    Nilable, RegisteredError,
};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/codegen")
}

fn vectors() -> Value {
    let text = std::fs::read_to_string(dir().join("vectors.json")).expect("vectors.json");
    serde_json::from_str(&text).expect("json")
}

fn file(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Decodes `bytes` as `T` and, for deterministic vectors, checks that
/// encoding it again gives the same bytes.
fn round_trip<T: Encode + Decode + fmt::Debug>(bytes: &[u8], deterministic: bool) -> T {
    let mut dec = Decoder::new(bytes);
    let v = T::decode(&mut dec).unwrap_or_else(|e| panic!("decode {bytes:02x?}: {e}"));
    assert_eq!(dec.remaining(), 0, "{v:?} left bytes");
    if deterministic {
        assert_eq!(&codec::encode(&v)[..], bytes, "re-encoding {v:?}");
    }
    v
}

#[derive(Debug, Clone, PartialEq, Encode, Decode)]
struct Inner {
    a: i32,
    b: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Encode, Decode)]
struct Kind(u16);

#[derive(Debug, Clone, PartialEq, Encode, Decode)]
struct Record {
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

#[derive(Debug, Clone, PartialEq, Encode, Decode)]
struct NotFoundError {
    key: String,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode)]
struct ConflictError {
    key: String,
    version: i64,
}

/// The Go error types registered in the golden components.
#[derive(Debug, Clone, PartialEq)]
enum GoldenError {
    NotFound(NotFoundError),
    Conflict(ConflictError),
    Custom(NotFoundError),
}

const NOT_FOUND: &str = "*weftgolden.NotFoundError(github.com/ServiceWeaver/weaver/weftgolden)";
const CONFLICT: &str = "*weftgolden.ConflictError(github.com/ServiceWeaver/weaver/weftgolden)";
const CUSTOM: &str =
    "*generate.customErrorValue(github.com/ServiceWeaver/weaver/weavertest/internal/generate)";

impl fmt::Display for GoldenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GoldenError::NotFound(e) => write!(f, "not found: {}", e.key),
            GoldenError::Conflict(e) => write!(f, "conflict on {} at version {}", e.key, e.version),
            GoldenError::Custom(e) => write!(f, "customError({})", e.key),
        }
    }
}

impl RegisteredError for GoldenError {
    fn type_key(&self) -> &str {
        match self {
            GoldenError::NotFound(_) => NOT_FOUND,
            GoldenError::Conflict(_) => CONFLICT,
            GoldenError::Custom(_) => CUSTOM,
        }
    }
    fn encode_fields(&self, enc: &mut Encoder) {
        match self {
            GoldenError::NotFound(e) | GoldenError::Custom(e) => e.encode(enc),
            GoldenError::Conflict(e) => e.encode(enc),
        }
    }
    fn decode_fields(key: &str, dec: &mut Decoder<'_>) -> Option<Result<Self, CodecError>> {
        Some(match key {
            NOT_FOUND => Decode::decode(dec).map(GoldenError::NotFound),
            CONFLICT => Decode::decode(dec).map(GoldenError::Conflict),
            CUSTOM => Decode::decode(dec).map(GoldenError::Custom),
            _ => return None,
        })
    }
}

type Errors = ErrorList<GoldenError>;

fn bits(v: &Value) -> Option<u64> {
    v.get("bits_hex")
        .and_then(Value::as_str)
        .map(|h| u64::from_str_radix(h, 16).unwrap())
}

#[test]
fn every_value_decodes_and_re_encodes() {
    let vectors = vectors();
    let values = vectors["values"].as_array().unwrap();
    assert_eq!(values.len(), 102);
    for v in values {
        let name = v["file"].as_str().unwrap();
        let bytes = file(name);
        let det = v["deterministic"].as_bool().unwrap();
        let json = &v["value"];
        let stem = name.trim_start_matches("values/").trim_end_matches(".bin");
        match v["go_type"].as_str().unwrap() {
            "bool" => assert_eq!(Some(round_trip::<bool>(&bytes, det)), json.as_bool()),
            "int8" => assert_eq!(Some(round_trip::<i8>(&bytes, det) as i64), json.as_i64()),
            "int16" => assert_eq!(Some(round_trip::<i16>(&bytes, det) as i64), json.as_i64()),
            "int32" => assert_eq!(Some(round_trip::<i32>(&bytes, det) as i64), json.as_i64()),
            "int64" => assert_eq!(Some(round_trip::<i64>(&bytes, det)), json.as_i64()),
            "int" => {
                assert_eq!(Some(round_trip::<i64>(&bytes, det)), json.as_i64());
                assert_eq!(Some(round_trip::<isize>(&bytes, det) as i64), json.as_i64());
            }
            "uint8" => assert_eq!(Some(round_trip::<u8>(&bytes, det) as u64), json.as_u64()),
            "uint16" => assert_eq!(Some(round_trip::<u16>(&bytes, det) as u64), json.as_u64()),
            "uint32" => assert_eq!(Some(round_trip::<u32>(&bytes, det) as u64), json.as_u64()),
            "uint64" => assert_eq!(Some(round_trip::<u64>(&bytes, det)), json.as_u64()),
            "uint" => {
                assert_eq!(Some(round_trip::<u64>(&bytes, det)), json.as_u64());
                assert_eq!(Some(round_trip::<usize>(&bytes, det) as u64), json.as_u64());
            }
            "float32" => {
                // The file's bytes are the reference (`bits_hex` of
                // float32_nan_payload went through a float64 and was
                // quietened); round_trip compares them bit for bit.
                let f = round_trip::<f32>(&bytes, det);
                if let Some(x) = json.as_f64() {
                    assert_eq!(f, x as f32);
                }
            }
            "float64" => {
                let f = round_trip::<f64>(&bytes, det);
                match bits(v) {
                    Some(b) => assert_eq!(f.to_bits(), b),
                    None => assert_eq!(Some(f), json.as_f64()),
                }
            }
            "complex64" => {
                round_trip::<Complex<f32>>(&bytes, det);
            }
            "complex128" => {
                round_trip::<Complex<f64>>(&bytes, det);
            }
            "string" if stem == "string_invalid_utf8" => {
                // Rust strings are UTF-8: the bytes come through as []byte.
                assert_eq!(round_trip::<Vec<u8>>(&bytes, det), [0xff, 0xfe]);
                assert!(matches!(
                    codec::decode::<String>(&bytes),
                    Err(CodecError::InvalidUtf8 { offset: 0 })
                ));
            }
            "string" if stem == "string_len_neg1" => {
                // Decode-only: Go reads a nil length as "".
                assert_eq!(codec::decode::<String>(&bytes).unwrap(), "");
            }
            "string" => assert_eq!(
                Some(round_trip::<String>(&bytes, det).as_str()),
                json.as_str()
            ),
            "[]byte" => {
                let got = round_trip::<Nilable<Vec<u8>>>(&bytes, det);
                let want = json
                    .as_array()
                    .map(|a| a.iter().map(|x| x.as_u64().unwrap() as u8).collect());
                assert_eq!(got.0, want);
                round_trip::<codec::Bytes>(&bytes, det && want.is_some());
            }
            "time.Duration" => {
                let n = round_trip::<i64>(&bytes, det);
                assert_eq!(Some(n), json.as_i64());
                match codec::decode::<Duration>(&bytes) {
                    Ok(d) => assert_eq!(d.as_nanos() as i64, n),
                    Err(e) => assert!(n < 0 && matches!(e, CodecError::OutOfRange { .. })),
                }
            }
            "weftgolden.Kind (type Kind uint16)" => {
                assert_eq!(
                    Some(round_trip::<Kind>(&bytes, det).0 as u64),
                    json.as_u64()
                )
            }
            "time.Time" => {
                let t = round_trip::<GoTime>(&bytes, det);
                match stem {
                    "time_zero" => assert_eq!(t, GoTime::default()),
                    _ => {
                        // 2024-11-08T18:29:36.123456789Z, in either zone.
                        let want = UNIX_EPOCH + Duration::new(1_731_090_576, 123_456_789);
                        assert_eq!(t.to_system_time(), Some(want));
                        let offset = if stem == "time_utc" {
                            None
                        } else {
                            Some(330 * 60)
                        };
                        assert_eq!(t.offset, offset);
                    }
                }
            }
            "weftgolden.Record" => {
                let r = round_trip::<Record>(&bytes, det);
                assert_eq!(r.name, json["Name"].as_str().unwrap());
                assert_eq!(r.ptr, json["Ptr"].as_i64());
            }
            "weftgolden.Inner" => {
                assert_eq!(
                    round_trip::<Inner>(&bytes, det),
                    Inner {
                        a: -1,
                        b: "b".into()
                    }
                )
            }
            "[]string" => {
                let got = round_trip::<Nilable<Vec<String>>>(&bytes, det);
                assert_eq!(got.0.is_none(), json.is_null());
            }
            "[]int64" => {
                let got = round_trip::<Nilable<Vec<i64>>>(&bytes, det);
                let want = json
                    .as_array()
                    .map(|a| a.iter().map(|x| x.as_i64().unwrap()).collect());
                assert_eq!(got.0, want);
            }
            "map[string]int64" => {
                let got = round_trip::<Nilable<BTreeMap<String, i64>>>(&bytes, det);
                let want = json.as_object().map(|o| {
                    o.iter()
                        .map(|(k, v)| (k.clone(), v.as_i64().unwrap()))
                        .collect()
                });
                assert_eq!(got.0, want);
            }
            "*int64" => assert_eq!(round_trip::<Option<i64>>(&bytes, det), json.as_i64()),
            "[3]int16" => assert_eq!(round_trip::<[i16; 3]>(&bytes, det), [1, -2, 772]),
            other => panic!("no Rust type for {other} ({name})"),
        }
    }
}

#[test]
fn every_error_list_decodes_and_re_encodes() {
    let vectors = vectors();
    for e in vectors["errors"].as_array().unwrap() {
        let name = e["file"].as_str().unwrap();
        let bytes = file(name);
        let det = e["deterministic"].as_bool().unwrap();
        let mut dec = Decoder::new(&bytes);
        let list = Errors::decode_error(&mut dec).unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(dec.remaining(), 0, "{name}");
        match &list {
            None => assert_eq!(bytes, [0]),
            Some(l) => {
                if det {
                    let mut enc = Encoder::new();
                    l.encode_error(&mut enc);
                    assert_eq!(enc.as_slice(), &bytes[..], "{name}");
                }
                if let Some(s) = e["go_decoded_error_string"].as_str() {
                    assert_eq!(l.to_string(), s, "{name}");
                }
            }
        }
    }
}

/// Decodes a call's args as `A` and results as `R` + the error list, checks
/// the error string a Go client would see, and re-encodes both.
fn check_call<A, R>(call: &Value)
where
    A: Encode + Decode + fmt::Debug,
    R: Encode + Decode + fmt::Debug,
{
    let id = call["id"].as_str().unwrap();
    let det = call["deterministic"].as_bool().unwrap();
    let args = file(&format!("calls/{id}.args.bin"));
    let results = file(&format!("calls/{id}.results.bin"));
    round_trip::<A>(&args, det);

    let mut dec = Decoder::new(&results);
    let value = R::decode(&mut dec).unwrap_or_else(|e| panic!("{id} results: {e}"));
    assert_eq!(
        dec.offset() as u64,
        call["results"]["error_list_offset"].as_u64().unwrap(),
        "{id}"
    );
    let err = Errors::decode_error(&mut dec).unwrap_or_else(|e| panic!("{id} error: {e}"));
    assert_eq!(dec.remaining(), 0, "{id}");
    let go_sees = call["results"]["go_client_error_string"].as_str();
    assert_eq!(
        err.as_ref().map(|e| e.to_string()).as_deref(),
        go_sees,
        "{id}"
    );
    if det {
        let mut enc = Encoder::new();
        value.encode(&mut enc);
        match &err {
            None => enc.put_u8(0),
            Some(e) => e.encode_error(&mut enc),
        }
        assert_eq!(enc.as_slice(), &results[..], "{id} results");
    }
    // The routing key hashes as Go's router hashed it.
    if let Some(input) = call["shard_key_hasher_input_hex"].as_str() {
        let input = hex(input);
        // The routers return a string or a {string, int} struct.
        let mut dec = Decoder::new(&input);
        let pair = <(String, i64)>::decode(&mut dec)
            .ok()
            .filter(|_| dec.remaining() == 0);
        let key = if let Some(pair) = pair {
            codec::shard_key(&pair)
        } else {
            codec::shard_key(&codec::decode::<String>(&input).unwrap())
        };
        assert_eq!(
            Some(key),
            call["call_options_shard_key"].as_u64(),
            "{id} shard key"
        );
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

type Scalars = (
    (bool, i8, i16, i32, i64, i64, u8, u16),
    (u32, u64, u64, f32, f64, Complex<f32>, Complex<f64>, String),
);

#[test]
fn every_generated_stub_call_decodes_and_re_encodes() {
    let vectors = vectors();
    let calls = vectors["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 60);
    for call in calls {
        let id = call["id"].as_str().unwrap();
        let method = id.split('.').take(2).collect::<Vec<_>>().join(".");
        match method.as_str() {
            "reverser.Reverse" | "golden.Echo" => check_call::<(String,), String>(call),
            "simple.Getpid" => check_call::<(), i64>(call),
            "simple.Record" | "simple.RoutedRecord" => check_call::<(String, String), ()>(call),
            "simple.GetAll" => check_call::<(String,), Nilable<Vec<String>>>(call),
            "simple.GetMetadata" => check_call::<(), Nilable<BTreeMap<String, String>>>(call),
            "simple.UpdateMetadata" | "golden.Ping" => check_call::<(), ()>(call),
            // A proto message travels as its marshalled bytes.
            "protos.Ping" => check_call::<(Option<Vec<u8>>,), Option<Vec<u8>>>(call),
            "generate.Get" => check_call::<(String, i64), i64>(call),
            "generate.IncPointer" | "golden.Ptr" => check_call::<(Option<i64>,), Option<i64>>(call),
            "generate.DivMod" => check_call::<(i64, i64), (i64, i64)>(call),
            "golden.Scalars" => check_call::<Scalars, String>(call),
            "golden.Bytes" => check_call::<(Nilable<Vec<u8>>,), Nilable<Vec<u8>>>(call),
            "golden.Strings" => check_call::<(Nilable<Vec<String>>,), Nilable<Vec<String>>>(call),
            "golden.Int64s" => check_call::<(Nilable<Vec<i64>>,), Nilable<Vec<i64>>>(call),
            "golden.Dict" => check_call::<
                (Nilable<BTreeMap<String, i64>>,),
                Nilable<BTreeMap<String, i64>>,
            >(call),
            "golden.Array" => check_call::<([i16; 3],), [i16; 3]>(call),
            "golden.Named" => check_call::<(Kind, Duration), (Kind, Duration)>(call),
            "golden.Time" => check_call::<(GoTime,), GoTime>(call),
            "golden.Put" => check_call::<(Record,), i64>(call),
            "golden.Get" => check_call::<(String,), Option<Record>>(call),
            "golden.Scan" => check_call::<
                (String, i32),
                (Nilable<Vec<Record>>, Nilable<BTreeMap<String, i64>>),
            >(call),
            "golden.Join" => check_call::<(String, Nilable<Vec<String>>), String>(call),
            "golden.Fail" => check_call::<(String,), i64>(call),
            other => panic!("no signature for {other}"),
        }
    }
}

#[test]
fn captured_connections_carry_the_call_bytes() {
    use weft_proto::{DEFAULT_MAX_PAYLOAD, FrameDecoder, Message};
    let vectors = vectors();
    for f in vectors["frames"].as_array().unwrap() {
        let name = f["name"].as_str().unwrap();
        let Some(call) = f["call"].as_str() else {
            continue;
        };
        for (side, want) in [("client", "args"), ("server", "results")] {
            let wire = file(&format!("frames/{name}.{side}.bin"));
            let mut dec = FrameDecoder::new(DEFAULT_MAX_PAYLOAD);
            dec.extend_from_slice(&wire);
            let mut payload = None;
            while let Some(frame) = dec.decode().unwrap() {
                match Message::parse(frame).unwrap() {
                    Message::Request { args, .. } => payload = Some(args),
                    Message::Response { payload: p, .. } => payload = Some(p),
                    _ => {}
                }
            }
            let Ok(expected) = std::fs::read(dir().join(format!("calls/{call}.{want}.bin"))) else {
                continue;
            };
            if let Some(p) = payload {
                assert_eq!(&p[..], &expected[..], "{name} {side}");
            }
        }
    }
}

#[test]
fn shard_key_matches_the_go_hasher() {
    let v = vectors();
    let h = &v["shard_key_hashes"][0];
    let mut hasher = codec::Hasher::new();
    hasher.write("string");
    hasher.write(&1.0f32);
    hasher.write(&2.0f64);
    hasher.write(&3i64);
    hasher.write(&4i8);
    hasher.write(&5i16);
    hasher.write(&6i32);
    hasher.write(&7i64);
    hasher.write(&8u64);
    hasher.write(&9u8);
    hasher.write(&10u16);
    hasher.write(&11u32);
    hasher.write(&12u64);
    assert_eq!(Some(hasher.sum64()), h["sum64"].as_u64());
}

/// A Go error of a type this side has not registered (`fmt.Errorf("…: %w",
/// &ConflictError{…})`): its fields cannot be read, but the entries before
/// it are kept and the type is named, rather than the whole error lost.
#[test]
fn an_unregistered_error_type_keeps_what_came_before() {
    use weft_proto::codec::{ErrorList, ErrorListEntry};
    let bytes = file("errors/wrapped_automarshal.bin");
    let list =
        ErrorList::<weft_proto::codec::NoRegisteredErrors>::decode_error(&mut Decoder::new(&bytes))
            .unwrap()
            .expect("an error");
    assert_eq!(list.entries.len(), 2, "{list}");
    let ErrorListEntry::Emulated(last) = &list.entries[1] else {
        panic!("{list:?}");
    };
    assert!(last.message.contains("has not registered"), "{list}");
    assert!(last.message.contains("*"), "names the Go type: {list}");
    let ErrorListEntry::Emulated(first) = &list.entries[0] else {
        panic!("{list:?}");
    };
    assert!(!first.message.is_empty());
}

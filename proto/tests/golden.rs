//! Service Weaver's own encoder produced the vectors in `tests/golden/`
//! (see its README). weft must decode each to the inputs `vectors.json`
//! lists and, for the deterministic ones, encode those inputs to the same
//! bytes.

use bytes::Bytes;
use serde_json::Value;
use std::path::PathBuf;
use weft_proto::{DEFAULT_FLATTEN_LIMIT, Transmit};
use weft_proto::{DEFAULT_MAX_PAYLOAD, FrameDecoder};
use weft_proto::{Message, Metadata, MethodKey, RemoteError, RequestHeader, TraceContext, Version};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn vectors() -> Vec<Value> {
    let text = std::fs::read_to_string(dir().join("vectors.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["vectors"].as_array().unwrap().clone()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn bin(v: &Value) -> Vec<u8> {
    std::fs::read(dir().join(v["file"].as_str().unwrap())).unwrap()
}

/// Every frame in `bytes`, which must decode completely.
fn frames(bytes: &[u8]) -> Vec<Message> {
    let mut dec = FrameDecoder::new(DEFAULT_MAX_PAYLOAD);
    dec.extend_from_slice(bytes);
    let mut out = Vec::new();
    while let Some(f) = dec.decode().unwrap() {
        out.push(Message::parse(f).unwrap());
    }
    assert_eq!(dec.buffered(), 0, "trailing bytes");
    out
}

fn payload(inputs: &Value) -> Vec<u8> {
    match inputs["payload"].as_str().unwrap() {
        "5000 bytes of 'x' (0x78)" => vec![b'x'; 5000],
        s => s.as_bytes().to_vec(),
    }
}

fn expected_header(inputs: &Value) -> RequestHeader {
    let component = inputs["component"].as_str().unwrap();
    let method = inputs["method"].as_str().unwrap();
    let trace = inputs["trace"].as_object().map(|t| TraceContext {
        trace_id: unhex(t["trace_id_hex"].as_str().unwrap())
            .try_into()
            .unwrap(),
        span_id: unhex(t["span_id_hex"].as_str().unwrap())
            .try_into()
            .unwrap(),
        flags: t["flags"].as_u64().unwrap() as u8,
    });
    let metadata = inputs["metadata"].as_object().map(|m| {
        m.iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
            .collect::<Metadata>()
    });
    RequestHeader {
        method: MethodKey::new(component, method),
        deadline_micros: inputs["deadline_micros"].as_i64().unwrap(),
        trace,
        metadata,
    }
}

/// What weft encodes for a vector's inputs, or None for kinds built from
/// other vectors.
fn encode(v: &Value) -> Option<Vec<u8>> {
    let inputs = &v["inputs"];
    let id = inputs["id"].as_u64().unwrap_or(0);
    let mut tx = Transmit::new(DEFAULT_FLATTEN_LIMIT);
    match v["kind"].as_str().unwrap() {
        "version" => tx.push_version(Version(inputs["version"].as_u64().unwrap() as u32)),
        "request" => tx.push_request(
            id,
            expected_header(inputs).fields(),
            &Bytes::from(payload(inputs)),
        ),
        "response" => tx.push_response(id, &Bytes::from(payload(inputs))),
        "response_error" => tx.push_error(id, &expected_error(v)),
        "cancel" => tx.push_cancel(id),
        _ => return None,
    }
    let mut out = Vec::new();
    tx.drain_into(&mut out);
    Some(out)
}

fn expected_error(v: &Value) -> RemoteError {
    let entries = v["error_fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["tag"] == 3)
        .map(|f| weft_proto::ErrorEntry {
            message: f["msg"].as_str().unwrap().into(),
            format: f["fmt"].as_str().unwrap().into(),
        })
        .collect();
    RemoteError { entries }
}

fn check_decodes_to_inputs(v: &Value, msg: &Message) {
    let inputs = &v["inputs"];
    let id = inputs["id"].as_u64().unwrap();
    match (v["kind"].as_str().unwrap(), msg) {
        ("version", Message::Version(ver)) => {
            assert_eq!(ver.0 as u64, inputs["version"].as_u64().unwrap())
        }
        (
            "request",
            Message::Request {
                id: got,
                header,
                args,
            },
        ) => {
            assert_eq!(*got, id);
            assert_eq!(*header, expected_header(inputs));
            if let Some(key) = inputs["method_key_hex"].as_str() {
                assert_eq!(header.method.to_string(), key);
            }
            assert_eq!(&args[..], &payload(inputs)[..]);
        }
        (
            "response",
            Message::Response {
                id: got,
                payload: p,
            },
        ) => {
            assert_eq!(*got, id);
            assert_eq!(&p[..], &payload(inputs)[..]);
        }
        ("response_error", Message::ErrorResponse { id: got, payload }) => {
            assert_eq!(*got, id);
            let err = RemoteError::decode(payload).unwrap();
            assert_eq!(err, expected_error(v));
            assert_eq!(err.message(), inputs["error_string"].as_str().unwrap());
        }
        ("cancel", Message::Cancel { id: got }) => assert_eq!(*got, id),
        (kind, msg) => panic!("{kind} vector decoded as {msg:?}"),
    }
}

#[test]
fn every_frame_vector_decodes_to_its_inputs() {
    let mut seen = 0;
    for v in vectors().iter().filter(|v| v["kind"] != "stream") {
        let bytes = bin(v);
        assert_eq!(bytes, unhex(v["hex"].as_str().unwrap()), "{}", v["file"]);
        let msgs = frames(&bytes);
        assert_eq!(msgs.len(), 1, "{}", v["file"]);
        check_decodes_to_inputs(v, &msgs[0]);
        seen += 1;
    }
    assert_eq!(seen, 17);
}

#[test]
fn deterministic_vectors_encode_byte_for_byte() {
    let mut seen = 0;
    for v in vectors().iter().filter(|v| v["deterministic"] == true) {
        if let Some(bytes) = encode(v) {
            assert_eq!(bytes, bin(v), "{}", v["file"]);
            seen += 1;
        }
    }
    assert_eq!(seen, 14);
}

#[test]
fn two_entry_metadata_decodes_in_either_order_and_encodes_as_one_of_them() {
    let ab = bin(&serde_json::json!({"file": "request_deadline_trace_meta2_ab.bin"}));
    let ba = bin(&serde_json::json!({"file": "request_deadline_trace_meta2_ba.bin"}));
    assert_eq!(frames(&ab), frames(&ba));
    let v = vectors()
        .into_iter()
        .find(|v| v["file"] == "request_deadline_trace_meta2_ab.bin")
        .unwrap();
    let ours = encode(&v).unwrap();
    assert!(ours == ab || ours == ba);
}

#[test]
fn wrapped_error_decodes_outer_then_inner() {
    let v = vectors()
        .into_iter()
        .find(|v| v["file"] == "error_wrapped_id7.bin")
        .unwrap();
    let Message::ErrorResponse { payload, .. } = &frames(&bin(&v))[0] else {
        panic!("not an error response")
    };
    let err = RemoteError::decode(payload).unwrap();
    let messages: Vec<_> = err.entries.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(messages, ["outer: inner", "inner"]);
}

#[test]
fn large_request_is_written_as_chunks_with_the_same_bytes() {
    let v = vectors()
        .into_iter()
        .find(|v| v["file"] == "request_5000_chunked.bin")
        .unwrap();
    let args = Bytes::from(payload(&v["inputs"]));
    let mut tx = Transmit::new(DEFAULT_FLATTEN_LIMIT);
    tx.push_request(3, expected_header(&v["inputs"]).fields(), &args);
    let mut slices = [std::io::IoSlice::new(&[]); 4];
    let n = tx.io_slices(&mut slices);
    assert_eq!(n, 2, "header chunk + payload chunk");
    // The payload chunk is the caller's buffer, not a copy.
    assert_eq!(slices[1].as_ptr(), args.as_ptr());
    let joined: Vec<u8> = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
    assert_eq!(joined, bin(&v));
    assert_eq!(
        bin(&v),
        std::fs::read(dir().join("request_5000_flat.bin")).unwrap()
    );
}

#[test]
fn captured_streams_decode_frame_by_frame() {
    let client = frames(&std::fs::read(dir().join("stream_client_plain.bin")).unwrap());
    assert_eq!(
        client,
        [
            Message::Version(Version::CURRENT),
            Message::Request {
                id: 1,
                header: RequestHeader::new(MethodKey::new("weft.Test", "Echo")),
                args: Bytes::from_static(b"hello"),
            },
        ]
    );
    let server = frames(&std::fs::read(dir().join("stream_server_plain.bin")).unwrap());
    assert_eq!(
        server,
        [
            Message::Version(Version::CURRENT),
            Message::Response {
                id: 1,
                payload: Bytes::from_static(b"hello"),
            },
        ]
    );
}

#[test]
fn method_keys_match() {
    let text = std::fs::read_to_string(dir().join("vectors.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    for k in v["method_keys"].as_array().unwrap() {
        let key = MethodKey::new(
            k["component"].as_str().unwrap(),
            k["method"].as_str().unwrap(),
        );
        assert_eq!(key.to_string(), k["hex"].as_str().unwrap());
    }
}

#[test]
fn go_context_errors_are_reproduced_exactly() {
    for (file, err) in [
        ("error_context_canceled_id7.bin", RemoteError::canceled()),
        (
            "error_deadline_exceeded_id7.bin",
            RemoteError::deadline_exceeded(),
        ),
        ("error_boom_id7.bin", RemoteError::new("boom")),
    ] {
        let mut tx = Transmit::new(DEFAULT_FLATTEN_LIMIT);
        tx.push_error(7, &err);
        let mut out = Vec::new();
        tx.drain_into(&mut out);
        assert_eq!(out, std::fs::read(dir().join(file)).unwrap(), "{file}");
    }
}

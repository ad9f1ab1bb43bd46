//! Property tests for the wire codec: round trips, chunking independence,
//! and bounded behaviour on arbitrary bytes.

use bytes::Bytes;
use proptest::prelude::*;
use weft_proto::ErrorEntry;
use weft_proto::GoAway;
use weft_proto::Transmit;
use weft_proto::{FrameDecoder, HEADER_LEN};
use weft_proto::{Message, Metadata, MethodKey, RemoteError, RequestHeader, TraceContext, Version};

fn trace() -> impl Strategy<Value = TraceContext> {
    (any::<[u8; 16]>(), any::<[u8; 8]>(), any::<u8>()).prop_map(|(trace_id, span_id, flags)| {
        TraceContext {
            trace_id,
            span_id,
            flags,
        }
    })
}

fn metadata() -> impl Strategy<Value = Metadata> {
    prop::collection::vec((".{0,8}", ".{0,8}"), 0..6)
        .prop_map(|pairs| pairs.into_iter().collect::<Metadata>())
}

fn header() -> impl Strategy<Value = RequestHeader> {
    (
        any::<[u8; 16]>(),
        any::<i64>(),
        prop::option::of(trace()),
        prop::option::of(metadata()),
    )
        .prop_map(|(key, deadline_micros, trace, metadata)| RequestHeader {
            method: MethodKey(key),
            deadline_micros,
            trace,
            metadata,
        })
}

fn remote_error() -> impl Strategy<Value = RemoteError> {
    prop::collection::vec((".{0,12}", ".{0,12}"), 0..4).prop_map(|v| RemoteError {
        entries: v
            .into_iter()
            .map(|(message, format)| ErrorEntry { message, format })
            .collect(),
    })
}

fn payload() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        prop::collection::vec(any::<u8>(), 4000..6000),
    ]
    .prop_map(Bytes::from)
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        any::<u32>().prop_map(|v| Message::Version(Version(v))),
        (1..u64::MAX, header(), payload()).prop_map(|(id, header, args)| Message::Request {
            id,
            header,
            args
        }),
        (any::<u64>(), payload()).prop_map(|(id, payload)| Message::Response { id, payload }),
        (any::<u64>(), remote_error()).prop_map(|(id, e)| {
            let mut buf = Vec::new();
            e.encode(&mut buf);
            Message::ErrorResponse {
                id,
                payload: buf.into(),
            }
        }),
        any::<u64>().prop_map(|id| Message::Cancel { id }),
        (any::<u64>(), ".{0,40}")
            .prop_map(|(last_id, reason)| Message::GoAway(GoAway { last_id, reason })),
    ]
}

fn encode(msgs: &[Message], flatten_limit: usize) -> Vec<u8> {
    let mut tx = Transmit::new(flatten_limit);
    for m in msgs {
        match m {
            Message::Version(v) => tx.push_version(*v),
            Message::Request { id, header, args } => tx.push_request(*id, header.fields(), args),
            Message::Response { id, payload } => tx.push_response(*id, payload),
            Message::ErrorResponse { id, payload } => {
                tx.push_error(*id, &RemoteError::decode(payload).unwrap())
            }
            Message::Cancel { id } => tx.push_cancel(*id),
            Message::GoAway(g) => tx.push_goaway(g.last_id, &g.reason),
        }
    }
    let mut out = Vec::new();
    tx.drain_into(&mut out);
    out
}

fn decode_chunked(wire: &[u8], chunks: &[usize], max: u64) -> Vec<Message> {
    let mut dec = FrameDecoder::new(max);
    let mut out = Vec::new();
    let mut rest = wire;
    let mut sizes = chunks.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap()).min(rest.len());
        dec.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        while let Some(f) = dec.decode().unwrap() {
            out.push(Message::parse(f).unwrap());
        }
    }
    assert_eq!(dec.buffered(), 0);
    out
}

proptest! {
    #[test]
    fn every_message_kind_round_trips(
        msgs in prop::collection::vec(message(), 1..8),
        flatten in prop_oneof![Just(0usize), Just(4096), Just(usize::MAX)],
    ) {
        // A version frame always has id 0; anything else is a decode error.
        let wire = encode(&msgs, flatten);
        let got = decode_chunked(&wire, &[wire.len()], 1 << 20);
        prop_assert_eq!(got, msgs);
    }

    #[test]
    fn chunking_does_not_change_the_frames(
        msgs in prop::collection::vec(message(), 1..8),
        chunks in prop::collection::vec(1usize..70_000, 1..16),
    ) {
        let wire = encode(&msgs, 4096);
        let whole = decode_chunked(&wire, &[wire.len()], 1 << 20);
        prop_assert_eq!(decode_chunked(&wire, &[1], 1 << 20), whole.clone());
        prop_assert_eq!(decode_chunked(&wire, &chunks, 1 << 20), whole);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(
        data in prop::collection::vec(any::<u8>(), 0..4096),
        chunk in 1usize..512,
        max in 0u64..2048,
    ) {
        let mut dec = FrameDecoder::new(max);
        let bound = 2 * (HEADER_LEN + max as usize + chunk);
        'feed: for piece in data.chunks(chunk) {
            dec.extend_from_slice(piece);
            loop {
                match dec.decode() {
                    Ok(Some(f)) => {
                        prop_assert!(f.payload.len() as u64 <= max);
                        let _ = Message::parse(f);
                    }
                    Ok(None) => break,
                    Err(_) => break 'feed,
                }
            }
            prop_assert!(dec.capacity() <= bound, "capacity {} > {}", dec.capacity(), bound);
        }
    }

    #[test]
    fn a_header_claim_alone_reserves_little(len in 0u64..(1 << 40), id: u64) {
        let max = 100 << 20;
        let mut dec = FrameDecoder::new(max);
        let mut raw = id.to_le_bytes().to_vec();
        raw.extend_from_slice(&(1 | (len << 8)).to_le_bytes());
        dec.extend_from_slice(&raw);
        match dec.decode() {
            Ok(None) => prop_assert!(len > 0 && dec.capacity() <= 64 * 1024 + HEADER_LEN),
            Ok(Some(_)) => prop_assert_eq!(len, 0),
            Err(e) => prop_assert!(len > max, "{}", e),
        }
    }

    #[test]
    fn header_decoder_never_panics(data in prop::collection::vec(any::<u8>(), 0..256)) {
        weft_proto::fuzz::request_header(&data);
    }

    #[test]
    fn error_decoder_never_panics(data in prop::collection::vec(any::<u8>(), 0..256)) {
        weft_proto::fuzz::error_payload(&data);
    }
}

//! Heap allocations on the codec's hot path, counted exactly.
//!

use bytes::Bytes;
use weft_proto::{DEFAULT_FLATTEN_LIMIT, Transmit};
use weft_proto::{DEFAULT_MAX_PAYLOAD, FrameDecoder, FrameHeader, HEADER_LEN};
use weft_proto::{Message, MethodKey, RequestHeader};

mod counting;

use counting::{allocations, largest_allocation};

#[test]
fn encoding_into_a_reused_buffer_allocates_nothing() {
    let header = RequestHeader::new(MethodKey::new("weft.Test", "Echo"));
    let args = Bytes::from(vec![7; 64]);
    let mut tx = Transmit::new(DEFAULT_FLATTEN_LIMIT);
    // Warm up: the buffer grows to its working size once.
    for id in 1..=16 {
        tx.push_request(id, header.fields(), &args);
        tx.push_response(id, &args);
    }
    tx.advance(tx.len());
    let (n, ()) = allocations(|| {
        for id in 17..=1000 {
            tx.push_request(id, header.fields(), &args);
            tx.push_response(id, &args);
            tx.push_cancel(id);
            tx.advance(tx.len());
        }
    });
    assert_eq!(n, 0);
}

#[test]
fn decoding_a_frame_header_allocates_nothing() {
    let raw = FrameHeader {
        id: 9,
        ty: weft_proto::MessageType::Request,
        len: 64,
    }
    .encode();
    let (n, ()) = allocations(|| {
        for _ in 0..1000 {
            std::hint::black_box(FrameHeader::decode(&raw, DEFAULT_MAX_PAYLOAD).unwrap());
        }
    });
    assert_eq!(n, 0);
}

#[test]
fn decoding_hands_out_the_payload_without_copying_it() {
    let header = RequestHeader::new(MethodKey::new("weft.Test", "Echo"));
    let mut tx = Transmit::new(DEFAULT_FLATTEN_LIMIT);
    tx.push_request(1, header.fields(), &Bytes::from(vec![7; 64]));
    tx.push_response(1, &Bytes::from(vec![8; 64]));
    let mut wire = Vec::new();
    tx.drain_into(&mut wire);

    let mut dec = FrameDecoder::new(DEFAULT_MAX_PAYLOAD);
    dec.read_buf(wire.len()).extend_from_slice(&wire);
    let base = dec.read_buf(0).as_ptr() as usize;
    let Some(f) = dec.decode().unwrap() else {
        panic!()
    };
    // The request's args are a view HEADER_LEN + 4 + header bytes into the
    // very buffer the bytes were read into.
    let Message::Request { args, .. } = Message::parse(f).unwrap() else {
        panic!()
    };
    assert_eq!(
        args.as_ptr() as usize,
        base + HEADER_LEN + 4 + header.encoded_len()
    );

    let (n, ()) = allocations(|| {
        let f = dec.decode().unwrap().unwrap();
        assert_eq!(f.payload.len(), 64);
        std::hint::black_box(f);
    });
    assert_eq!(n, 0, "splitting a response payload out of the buffer");
}

/// A value-codec length of 2^31 - 1 on a 10-byte input is refused before
/// anything is reserved.
#[test]
fn a_hostile_length_allocates_nothing() {
    let input = b"\xff\xff\xff\x7f\x01\x02\x03\x04\x05\x06";
    let (n, r) = allocations(|| weft_proto::codec::decode::<Vec<u64>>(input).is_err());
    assert!(r);
    assert_eq!(n, 0);
    let (n, r) = allocations(|| {
        weft_proto::codec::decode::<std::collections::HashMap<u32, String>>(input).is_err()
    });
    assert!(r);
    assert_eq!(n, 0);
}

/// Elements far larger in memory than on the wire (an array of 1000 u64
/// takes 8000 bytes either way, a `Vec` of them 24 bytes of struct each):
/// what a length announces is reserved only up to a bound, not 1000x.
#[test]
fn large_elements_are_not_reserved_ahead() {
    // 60 000 empty inner vectors: 4 bytes each on the wire, 24 in memory.
    let mut input = 60_000u32.to_le_bytes().to_vec();
    input.resize(4 + 4 * 60_000, 0);
    let v = weft_proto::codec::decode::<Vec<Vec<u64>>>(&input).unwrap();
    assert_eq!(v.len(), 60_000);
    // Announce 60 000 but send 4 elements: the reservation stays small.
    let mut short = 60_000u32.to_le_bytes().to_vec();
    short.resize(4 + 4 * 4, 0);
    short.resize(4 + 60_000, 0xfe); // bytes enough for the length check; an invalid 5th
    let (largest, r) = counting::largest_allocation(|| {
        weft_proto::codec::decode::<Vec<Vec<u64>>>(&short).is_err()
    });
    assert!(r);
    // 60 000 x 24 bytes would be 1.4 MB; the bound is 64 KiB.
    assert!(largest <= 64 * 1024, "{largest} bytes reserved");
}

/// A `None` is one byte on the wire and a whole `Option<T>` in memory: a
/// megabyte of them as `Vec<Option<[u8; 4096]>>` would take 4 GB. Decoding
/// stops at `MAX_MEMORY_RATIO` bytes per input byte, before allocating.
#[test]
fn wide_elements_cannot_take_many_times_their_input() {
    use weft_proto::codec::{self, CodecError};
    let n = 1usize << 20;
    let mut input = (n as u32).to_le_bytes().to_vec();
    input.resize(4 + n, 0);
    let (largest, r) = counting::largest_allocation(|| {
        codec::decode::<Vec<Option<[u8; 4096]>>>(&input).map(|v| v.len())
    });
    assert!(
        matches!(r, Err(CodecError::TooMuchMemory { input: i, .. }) if i == input.len()),
        "{r:?}"
    );
    assert!(largest <= 64 * 1024, "{largest} bytes allocated");
    // The same in maps, and spread over many small vectors.
    let mut maps = (n as u32 / 2).to_le_bytes().to_vec();
    for k in 0..n as u32 / 2 {
        maps.extend_from_slice(&k.to_le_bytes());
        maps.push(0);
    }
    let r =
        codec::decode::<std::collections::BTreeMap<u32, Option<[u8; 512]>>>(&maps).map(|m| m.len());
    assert!(matches!(r, Err(CodecError::TooMuchMemory { .. })), "{r:?}");
    let many = codec::encode(&vec![vec![None::<[u8; 256]>; 64]; 4096]);
    let r = codec::decode::<Vec<Vec<Option<[u8; 256]>>>>(&many).map(|v| v.len());
    assert!(matches!(r, Err(CodecError::TooMuchMemory { .. })), "{r:?}");
    // Go's shape for a slice of pointers, Option<Box<T>>, decodes: 8 bytes
    // a None.
    let ok = codec::decode::<Vec<Option<Box<[u8; 4096]>>>>(&input).unwrap();
    assert_eq!(ok.len(), n);
    // So do narrow elements, and small inputs of wide ones.
    let strings = codec::encode(&vec![None::<String>; n]);
    assert_eq!(
        codec::decode::<Vec<Option<String>>>(&strings)
            .unwrap()
            .len(),
        n
    );
    let small = codec::encode(&vec![None::<[u8; 64]>; 512]);
    assert_eq!(
        codec::decode::<Vec<Option<[u8; 64]>>>(&small)
            .unwrap()
            .len(),
        512
    );
}

/// Large frames are read into buffers of their own; once the application
/// drops a frame, its buffer serves the next one: after the first few, a
/// 1 MiB frame costs one small allocation (the view's owner) instead of a
/// fresh MiB, grown in steps, per frame.
#[test]
fn large_frames_reuse_their_buffers() {
    let payload = Bytes::from(vec![9; 1 << 20]);
    let mut tx = Transmit::new(DEFAULT_FLATTEN_LIMIT);
    for id in 1..=40 {
        tx.push_response(id, &payload);
    }
    let mut wire = Vec::new();
    tx.drain_into(&mut wire);

    let mut dec = FrameDecoder::new(DEFAULT_MAX_PAYLOAD);
    let mut rest = &wire[..];
    // As a driver reads: into the spare room `read_buf` gives, 64 KiB at
    // most per read. Frames are dropped as they come (the caller is done).
    let mut read_all = |dec: &mut FrameDecoder, frames: usize| {
        let mut got = 0;
        while got < frames {
            let buf = dec.read_buf(4096);
            let n = (buf.capacity() - buf.len()).min(64 * 1024).min(rest.len());
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            while let Some(f) = dec.decode().unwrap() {
                assert_eq!(f.payload.len(), 1 << 20);
                got += 1;
            }
        }
    };
    read_all(&mut dec, 10);
    let (n, ()) = allocations(|| read_all(&mut dec, 30));
    assert!(n <= 30, "{n} allocations for 30 frames of 1 MiB");
}

/// A header claiming a large frame is only a claim: with nothing of the
/// frame arrived, the decoder holds no more memory than the read buffer it
/// had (the frame's own buffer replaces it), and as bytes come the buffer
/// grows with them.
#[test]
fn a_large_frame_header_alone_holds_no_more_memory() {
    let mut dec = FrameDecoder::new(DEFAULT_MAX_PAYLOAD);
    let header = FrameHeader {
        id: 1,
        ty: weft_proto::MessageType::Response,
        len: 100 << 20,
    }
    .encode();
    dec.read_buf(4096).extend_from_slice(&header);
    let before = dec.capacity();
    let (largest, frame) = largest_allocation(|| dec.decode().unwrap());
    assert!(frame.is_none());
    assert!(largest <= 64 * 1024, "the header alone: {largest}");
    assert!(
        dec.capacity() <= before,
        "holds {} (was {before})",
        dec.capacity()
    );
    // 64 KiB of the frame arrive: the buffer stays within a few of those.
    let (largest, ()) = largest_allocation(|| {
        let chunk = [0u8; 4096];
        for _ in 0..16 {
            dec.read_buf(4096).extend_from_slice(&chunk);
            assert!(dec.decode().unwrap().is_none());
        }
    });
    assert!(largest <= 4 * 64 * 1024, "largest allocation {largest}");
    assert!(dec.capacity() <= 4 * 64 * 1024, "holds {}", dec.capacity());
}

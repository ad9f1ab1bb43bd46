//! Frames large enough to get a buffer of their own decode exactly like
//! small ones, whatever the reads look like, with frames held or dropped.

use bytes::Bytes;
use proptest::prelude::*;
use weft_proto::{FrameDecoder, Transmit};

/// Payload sizes around the large-frame threshold (256 KiB) and small ones.
fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        0usize..64,
        4000usize..6000,
        250_000usize..270_000,
        500_000usize..700_000
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn large_frames_decode_like_small_ones(
        sizes in prop::collection::vec(size(), 1..8),
        reads in prop::collection::vec(1usize..300_000, 1..8),
        keep in prop::collection::vec(any::<bool>(), 8),
    ) {
        let payloads: Vec<Bytes> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| Bytes::from(vec![i as u8 ^ 0x5a; n]))
            .collect();
        let mut tx = Transmit::new(4096);
        for (i, p) in payloads.iter().enumerate() {
            tx.push_response(i as u64, p);
        }
        let mut wire = Vec::new();
        tx.drain_into(&mut wire);

        let mut dec = FrameDecoder::new(1 << 20);
        let mut rest = &wire[..];
        let mut reads = reads.iter().cycle();
        let mut got = 0;
        let mut held = Vec::new();
        while !rest.is_empty() {
            // A driver's read: into the spare room, as much as arrived.
            let buf = dec.read_buf(4096);
            let n = (buf.capacity() - buf.len()).min(*reads.next().unwrap()).min(rest.len());
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            while let Some(f) = dec.decode().unwrap() {
                prop_assert_eq!(f.header.id, got as u64);
                prop_assert_eq!(&f.payload, &payloads[got]);
                // Some frames are held to the end, others dropped at once.
                if keep[got % keep.len()] {
                    held.push((got, f.payload));
                }
                got += 1;
            }
        }
        prop_assert_eq!(got, payloads.len());
        prop_assert_eq!(dec.buffered(), 0);
        prop_assert!(!dec.is_mid_frame());
        // What was held is intact: no buffer went back while in use.
        for (i, p) in held {
            prop_assert_eq!(&p, &payloads[i]);
        }
    }
}

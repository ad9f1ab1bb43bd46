//! Property tests for Service Weaver's argument encoding
//! (`weft_proto::codec`): round trips of arbitrary values, and hostile
//! input that fails without panicking or reserving what it cannot hold.

use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use weft_macros::{Decode, Encode};
use weft_proto::codec::{self, CodecError, Complex, Decode, Encode, GoTime, Nilable};

#[derive(Debug, Clone, PartialEq, Encode, Decode)]
struct Leaf {
    id: u32,
    name: String,
    weights: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode)]
struct Tree {
    leaves: Vec<Leaf>,
    index: BTreeMap<String, Vec<i64>>,
    parent: Option<Box<Leaf>>,
    fixed: [u16; 4],
    kind: Kind,
    wait: Duration,
    raw: Nilable<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Encode, Decode)]
#[repr(u8)]
enum Kind {
    A = 1,
    B = 7,
    C = 200,
}

fn leaf() -> impl Strategy<Value = Leaf> {
    (
        any::<u32>(),
        ".{0,8}",
        prop::collection::vec(-1e9f64..1e9, 0..4),
    )
        .prop_map(|(id, name, weights)| Leaf { id, name, weights })
}

fn tree() -> impl Strategy<Value = Tree> {
    (
        prop::collection::vec(leaf(), 0..4),
        prop::collection::btree_map(".{0,4}", prop::collection::vec(any::<i64>(), 0..3), 0..3),
        prop::option::of(leaf().prop_map(Box::new)),
        any::<[u16; 4]>(),
        prop_oneof![Just(Kind::A), Just(Kind::B), Just(Kind::C)],
        (0..i64::MAX as u64).prop_map(Duration::from_nanos),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..8)).prop_map(Nilable),
    )
        .prop_map(|(leaves, index, parent, fixed, kind, wait, raw)| Tree {
            leaves,
            index,
            parent,
            fixed,
            kind,
            wait,
            raw,
        })
}

fn round_trip<T: Encode + Decode + PartialEq + std::fmt::Debug>(
    v: &T,
) -> Result<(), TestCaseError> {
    let bytes = codec::encode(v);
    let back = codec::decode::<T>(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, v);
    prop_assert_eq!(codec::encode(&back), bytes);
    Ok(())
}

proptest! {
    #[test]
    fn structs_round_trip(t in tree()) {
        round_trip(&t)?;
    }

    #[test]
    fn scalars_round_trip(v in (any::<bool>(), any::<i8>(), any::<u16>(), any::<i32>(), any::<u64>(), any::<isize>(), any::<usize>(), any::<char>())) {
        round_trip(&v)?;
    }

    #[test]
    fn floats_keep_their_bits(a in any::<u32>(), b in any::<u64>()) {
        let v = (f32::from_bits(a), f64::from_bits(b), Complex { re: f32::from_bits(a), im: f32::from_bits(a) });
        let back: (f32, f64, Complex<f32>) = codec::decode(&codec::encode(&v)).unwrap();
        prop_assert_eq!(back.0.to_bits(), a);
        prop_assert_eq!(back.1.to_bits(), b);
        prop_assert_eq!(back.2.im.to_bits(), a);
    }

    #[test]
    fn maps_round_trip(m in prop::collection::hash_map(any::<i16>(), ".{0,6}", 0..8)) {
        // Entry order follows the map's iteration, random as in Go: compare
        // values, not bytes.
        let back: HashMap<i16, String> = codec::decode(&codec::encode(&m)).unwrap();
        prop_assert_eq!(back, m);
    }

    #[test]
    fn times_round_trip(seconds in any::<i64>(), nanos in 0u32..1_000_000_000, offset in prop::option::of(-64_800i32..64_800)) {
        // -60 s is Go's UTC marker and cannot be a zone of its own.
        prop_assume!(offset != Some(-60));
        round_trip(&GoTime { seconds, nanos, offset })?;
    }

    /// Any prefix of a valid encoding fails as truncated; nothing panics.
    #[test]
    fn truncations_fail_cleanly(t in tree(), cut in any::<prop::sample::Index>()) {
        let bytes = codec::encode(&t);
        let cut = cut.index(bytes.len());
        prop_assume!(cut < bytes.len());
        let err = codec::decode::<Tree>(&bytes[..cut]).unwrap_err();
        let truncated = matches!(err, CodecError::Truncated { .. });
        prop_assert!(truncated, "{:?}", err);
    }

    /// Arbitrary bytes decode or fail; they never panic.
    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = codec::decode::<Tree>(&bytes);
        let _ = codec::decode::<HashMap<String, Vec<Option<u8>>>>(&bytes);
        let _ = codec::decode::<(GoTime, String, char)>(&bytes);
    }
}

/// A length of 2^31 - 1 on a 10-byte input must not reserve 2 GiB: the
/// decoder refuses it against the bytes left (`alloc.rs` counts the
/// allocations: none); here the error is checked for every container.
#[test]
fn hostile_lengths_fail_before_allocating() {
    let input = b"\xff\xff\xff\x7f\x01\x02\x03\x04\x05\x06";
    for err in [
        codec::decode::<Vec<u64>>(input).unwrap_err(),
        codec::decode::<Vec<u8>>(input).unwrap_err(),
        codec::decode::<String>(input).unwrap_err(),
        codec::decode::<HashMap<u8, u8>>(input).unwrap_err(),
        codec::decode::<BTreeMap<u8, u8>>(input).unwrap_err(),
        codec::decode::<Vec<Vec<u8>>>(input).unwrap_err(),
    ] {
        assert!(
            matches!(err, CodecError::Truncated { need, have: 6, .. } if need >= 6),
            "{err}"
        );
    }
    assert_eq!(
        codec::decode::<Vec<u8>>(b"\xfe\xff\xff\xff").unwrap_err(),
        CodecError::NegativeLength { len: -2, offset: 0 }
    );
    assert_eq!(
        codec::decode::<Kind>(b"\x02").unwrap_err(),
        CodecError::OutOfRange {
            ty: "Kind",
            value: 2
        }
    );
    assert_eq!(
        codec::decode::<bool>(b"\x02").unwrap_err(),
        CodecError::InvalidBool { byte: 2, offset: 0 }
    );
}

/// A linked list: each present pointer one level deeper.
#[derive(Debug, PartialEq, Encode, Decode)]
struct Node {
    next: Option<Box<Node>>,
}

/// A tree: each level a slice of the next.
#[derive(Debug, PartialEq, Encode, Decode)]
struct Nest {
    children: Vec<Nest>,
}

/// Runs `f` on a thread with half a megabyte of stack, a quarter of a
/// Tokio worker's: deep input must fail by the limit, not by the stack
/// (whose overflow aborts the whole process).
fn on_a_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn a_recursive_value_nested_past_the_limit_fails_rather_than_exhausting_the_stack() {
    let depth = codec::MAX_DEPTH as usize;
    // A megabyte of "present" pointers: a million levels asked for.
    let hostile = vec![1u8; 1 << 20];
    let r = on_a_small_stack(move || codec::decode::<Node>(&hostile));
    assert!(
        matches!(r, Err(CodecError::TooDeep { max, .. }) if max == codec::MAX_DEPTH),
        "{r:?}"
    );
    // As deep as the limit allows decodes.
    let mut within = vec![1u8; depth];
    within.push(0);
    let r = on_a_small_stack(move || codec::decode::<Node>(&within).map(|_| ()));
    assert_eq!(r, Ok(()));
    let mut past = vec![1u8; depth + 1];
    past.push(0);
    let r = on_a_small_stack(move || codec::decode::<Node>(&past).map(|_| ()));
    assert!(matches!(r, Err(CodecError::TooDeep { .. })), "{r:?}");
    // Through slices the same.
    let mut tree = Nest { children: vec![] };
    for _ in 0..depth + 1 {
        tree = Nest {
            children: vec![tree],
        };
    }
    let bytes = codec::encode(&tree);
    let r = on_a_small_stack(move || codec::decode::<Nest>(&bytes).map(|_| ()));
    assert!(matches!(r, Err(CodecError::TooDeep { .. })), "{r:?}");
}

#[test]
fn a_time_with_nanoseconds_past_a_second_is_carried_where_go_would_refuse_it() {
    let t = GoTime {
        seconds: 100,
        nanos: 2_500_000_000,
        offset: Some(3600),
    };
    let back: GoTime = codec::decode(&codec::encode(&t)).unwrap();
    assert_eq!(
        back,
        GoTime {
            seconds: 102,
            nanos: 500_000_000,
            offset: Some(3600)
        }
    );
    // -1 h is an ordinary zone; -60 s is Go's UTC marker (the same instant, in UTC).
    let azores = GoTime {
        offset: Some(-3600),
        ..back
    };
    let back: GoTime = codec::decode(&codec::encode(&azores)).unwrap();
    assert_eq!(back.offset, Some(-3600));
    let minus_one_minute = GoTime {
        offset: Some(-60),
        ..back
    };
    let back: GoTime = codec::decode(&codec::encode(&minus_one_minute)).unwrap();
    assert_eq!((back.seconds, back.offset), (102, None));
}

#[test]
fn slices_of_empty_structs_take_no_bytes_per_element_and_a_bounded_count() {
    // Go's `[]struct{}{{}, {}, {}}`: the length, and nothing else.
    let wire = 3i32.to_le_bytes();
    let v: Vec<()> = codec::decode(&wire).unwrap();
    assert_eq!(v.len(), 3);
    let v: Vec<[u8; 0]> = codec::decode(&wire).unwrap();
    assert_eq!(v.len(), 3);
    #[derive(Debug, Encode, Decode)]
    struct Empty {}
    #[derive(Debug, Encode, Decode)]
    struct Nothing(Empty, ());
    let v: Vec<Nothing> = codec::decode(&wire).unwrap();
    assert_eq!(v.len(), 3);
    assert_eq!(&codec::encode(&v)[..], &wire[..]);
    // A claim of two billion costs no more than the memory budget allows.
    let wire = i32::MAX.to_le_bytes();
    assert!(matches!(
        codec::decode::<Vec<()>>(&wire),
        Err(CodecError::TooMuchMemory { .. })
    ));
    // Nor can arrays of them multiply the work (65 000 arrays of a
    // million each, from four bytes).
    assert!(matches!(
        codec::decode::<Vec<[(); 1_000_000]>>(&65_000i32.to_le_bytes()),
        Err(CodecError::TooMuchMemory { .. })
    ));
    // Elements that do take bytes are still checked against those left.
    assert!(matches!(
        codec::decode::<Vec<u8>>(&3i32.to_le_bytes()),
        Err(CodecError::Truncated { .. })
    ));
}

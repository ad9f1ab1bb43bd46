//! Every malformed input gets a typed error naming the problem.

use weft_proto::decode_request;
use weft_proto::{
    DecodeError, ErrorPayloadError, Message, MethodKey, RemoteError, RequestHeader, Version,
};
use weft_proto::{FrameDecoder, FrameHeader, HEADER_LEN};

fn header_bytes(id: u64, ty: u8, len: u64) -> [u8; HEADER_LEN] {
    let mut b = [0; HEADER_LEN];
    b[..8].copy_from_slice(&id.to_le_bytes());
    b[8..].copy_from_slice(&(u64::from(ty) | (len << 8)).to_le_bytes());
    b
}

fn decode_one(bytes: &[u8], max: u64) -> Result<Message, DecodeError> {
    let mut dec = FrameDecoder::new(max);
    dec.extend_from_slice(bytes);
    Message::parse(dec.decode()?.expect("complete frame"))
}

fn request_payload(header: &[u8], header_len: u32) -> Vec<u8> {
    let mut p = header_len.to_le_bytes().to_vec();
    p.extend_from_slice(header);
    p
}

fn valid_header() -> Vec<u8> {
    let mut h = Vec::new();
    RequestHeader::new(MethodKey::new("a", "b")).encode(&mut h);
    h
}

#[test]
fn unknown_message_type() {
    let err = decode_one(&header_bytes(1, 9, 0), 100).unwrap_err();
    assert_eq!(err, DecodeError::UnknownMessageType(9));
    assert_eq!(err.to_string(), "unknown message type 9");
}

#[test]
fn payload_over_the_limit_is_caught_from_the_header_alone() {
    let mut dec = FrameDecoder::new(1000);
    dec.extend_from_slice(&header_bytes(1, 1, 1001));
    let err = dec.decode().unwrap_err();
    assert_eq!(
        err,
        DecodeError::PayloadTooLarge {
            len: 1001,
            max: 1000
        }
    );
    assert!(err.to_string().contains("overly large message length 1001"));
    assert!(
        dec.capacity() < 1001,
        "nothing reserved for the claimed payload"
    );
    assert!(FrameHeader::decode(&header_bytes(1, 1, 1000), 1000).is_ok());
}

#[test]
fn version_frame_with_nonzero_id_or_short_payload() {
    let mut f = header_bytes(5, 0, 4).to_vec();
    f.extend_from_slice(&[0; 4]);
    assert_eq!(decode_one(&f, 100), Err(DecodeError::VersionNonZeroId(5)));
    let mut f = header_bytes(0, 0, 3).to_vec();
    f.extend_from_slice(&[0; 3]);
    let err = decode_one(&f, 100).unwrap_err();
    assert_eq!(err, DecodeError::VersionTooShort(3));
    assert_eq!(
        err.to_string(),
        "bad version message length 3, must be >= 4"
    );
    // Longer payloads carry future fields and are fine.
    let mut f = header_bytes(0, 0, 9).to_vec();
    f.extend_from_slice(&[2, 0, 0, 0, 9, 9, 9, 9, 9]);
    assert_eq!(decode_one(&f, 100), Ok(Message::Version(Version(2))));
    assert_eq!(Version(2).negotiate(Version::CURRENT), Version::CURRENT);
}

#[test]
fn header_length_past_the_end_of_the_payload() {
    let h = valid_header();
    let p = request_payload(&h, h.len() as u32 + 1);
    let err = decode_request(&p.into()).unwrap_err();
    assert!(matches!(err, DecodeError::HeaderPastEnd { .. }), "{err}");
    assert_eq!(
        decode_request(&vec![1, 0].into()),
        Err(DecodeError::MissingHeaderLength(2))
    );
}

#[test]
fn truncated_header_fields_are_named() {
    // Service Weaver's Go server panics on these; weft must name the field.
    let h = valid_header();
    let cases = [
        (10, "method key"),
        (16, "deadline"),
        (24, "trace context flag"),
        (25, "metadata flag"),
    ];
    for (len, field) in cases {
        let err = RequestHeader::decode(&h[..len]).unwrap_err();
        assert!(
            matches!(err, DecodeError::Truncated { field: f, .. } if f == field),
            "{len}: {err}"
        );
        assert!(err.to_string().contains(field));
    }
    let mut t = h[..24].to_vec();
    t.extend_from_slice(&[1, 0, 0]);
    assert!(matches!(
        RequestHeader::decode(&t),
        Err(DecodeError::Truncated {
            field: "trace id",
            ..
        })
    ));
}

#[test]
fn bad_bool_byte() {
    let mut h = valid_header();
    h[24] = 2;
    assert_eq!(
        RequestHeader::decode(&h),
        Err(DecodeError::BadBool {
            field: "trace context flag",
            byte: 2
        })
    );
}

fn with_metadata(entries: &[(&[u8], &[u8])], count: i32) -> Vec<u8> {
    let mut h = valid_header();
    *h.last_mut().unwrap() = 1;
    h.extend_from_slice(&count.to_le_bytes());
    for (k, v) in entries {
        for s in [k, v] {
            h.extend_from_slice(&(s.len() as u32).to_le_bytes());
            h.extend_from_slice(s);
        }
    }
    h
}

/// Go's strings need not be UTF-8, and Go's server takes any bytes: the
/// request goes on, the bytes that are not UTF-8 read as U+FFFD.
#[test]
fn metadata_that_is_not_utf8_is_taken_lossily() {
    let h = with_metadata(&[(b"ok", b"\xff\xfe"), (b"\xc0", b"v")], 2);
    let md = RequestHeader::decode(&h).unwrap().metadata.unwrap();
    assert_eq!(md.get("ok"), Some("\u{fffd}\u{fffd}"));
    assert_eq!(md.get("\u{fffd}"), Some("v"));
}

/// Each entry is 8 bytes on the wire at the least and 48 in memory: past
/// the cap a request is refused rather than taking six times its size.
#[test]
fn metadata_past_the_entry_limit_is_refused() {
    let max = weft_proto::MAX_METADATA_ENTRIES;
    let empty: Vec<(&[u8], &[u8])> = vec![(b"", b""); max + 1];
    let h = with_metadata(&empty, (max + 1) as i32);
    assert_eq!(
        RequestHeader::decode(&h),
        Err(DecodeError::TooMuchMetadata {
            count: (max + 1) as i64,
            max
        })
    );
    let h = with_metadata(&empty[..max], max as i32);
    assert_eq!(
        RequestHeader::decode(&h).unwrap().metadata.unwrap().len(),
        1
    );
}

#[test]
fn metadata_count_that_cannot_fit_is_rejected_before_allocating() {
    let h = with_metadata(&[], i32::MAX);
    assert!(
        matches!(RequestHeader::decode(&h), Err(DecodeError::BadMetadataCount { count, .. }) if count == i64::from(i32::MAX))
    );
    let h = with_metadata(&[], -1);
    assert!(matches!(
        RequestHeader::decode(&h),
        Err(DecodeError::BadMetadataCount { count: -1, .. })
    ));
    let h = with_metadata(&[(b"k", b"v")], 2);
    assert!(matches!(
        RequestHeader::decode(&h),
        Err(DecodeError::BadMetadataCount { .. })
    ));
}

#[test]
fn duplicate_metadata_keys_keep_the_last_value_like_a_go_map() {
    let h = with_metadata(&[(b"k", b"1"), (b"j", b"x"), (b"k", b"2")], 3);
    let md = RequestHeader::decode(&h).unwrap().metadata.unwrap();
    assert_eq!(md.get("k"), Some("2"));
    assert_eq!(md.len(), 2);
    let runs: &[(&[u8], &[u8])] = &[
        (b"k", b"1"),
        (b"j", b"x"),
        (b"k", b"2"),
        (b"j", b"y"),
        (b"a", b"z"),
        (b"k", b"3"),
    ];
    let md = RequestHeader::decode(&with_metadata(runs, 6))
        .unwrap()
        .metadata
        .unwrap();
    let entries: Vec<(&str, &str)> = md.iter().collect();
    assert_eq!(entries, [("a", "z"), ("j", "y"), ("k", "3")]);
}

#[test]
fn trailing_header_bytes_are_ignored() {
    let mut h = valid_header();
    h.extend_from_slice(b"future fields");
    assert_eq!(
        RequestHeader::decode(&h).unwrap(),
        RequestHeader::new(MethodKey::new("a", "b"))
    );
}

#[test]
fn error_payload_problems() {
    assert_eq!(
        RemoteError::decode(&[1, 0]),
        Err(ErrorPayloadError::Undecodable(1))
    );
    assert_eq!(
        RemoteError::decode(&[2]),
        Err(ErrorPayloadError::Undecodable(2))
    );
    assert_eq!(
        RemoteError::decode(&[7]),
        Err(ErrorPayloadError::UnknownTag(7))
    );
    assert!(matches!(
        RemoteError::decode(&[]),
        Err(ErrorPayloadError::Truncated { .. })
    ));
    assert!(matches!(
        RemoteError::decode(&[3, 9, 0, 0, 0, b'x']),
        Err(ErrorPayloadError::Truncated {
            field: "error message",
            ..
        })
    ));
    assert!(
        ErrorPayloadError::Undecodable(1)
            .to_string()
            .contains("undecodable")
    );
}

#[test]
fn rust_error_chains_encode_outermost_first() {
    let outer = Wrapped(std::io::Error::other("disk on fire"));
    let e = RemoteError::from_error(&outer);
    let messages: Vec<_> = e.entries.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(messages, ["while saving: disk on fire", "disk on fire"]);
}

#[derive(Debug)]
struct Wrapped(std::io::Error);
impl std::fmt::Display for Wrapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "while saving: {}", self.0)
    }
}
impl std::error::Error for Wrapped {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

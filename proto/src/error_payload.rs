//! Error responses, in Service Weaver's error encoding.
//!
//! The payload is a list of entries ended by a `0` byte. Plain Go errors are
//! tag `3`: the `Error()` string, then a "formatted representation"
//! `"(" + pkg path + ":" + %#v + ")"` that Go clients compare to implement
//! `errors.Is` across the wire. Tags `1` and `2` hold Go-registered error
//! types whose encoding only Go understands; weft reports those as
//! [`ErrorPayloadError::Undecodable`], which Go itself also treats as a
//! communication failure when it cannot decode an error.

use bytes::BufMut;
use std::fmt;

const TAG_END: u8 = 0;
const TAG_PLAIN: u8 = 3;

/// The formatted representation Go gives `context.Canceled`.
pub const GO_CANCELED_FMT: &str = "(:&errors.errorString{s:\"context canceled\"})";
/// The formatted representation Go gives `context.DeadlineExceeded`.
pub const GO_DEADLINE_FMT: &str = "(context:context.deadlineExceededError{})";

/// One error of a chain: its message and its Go formatted representation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ErrorEntry {
    /// What the error's `Error()` (Go) or `Display` (Rust) returned.
    pub message: String,
    /// The identity Go's `errors.Is` compares.
    pub format: String,
}

/// An error sent by a handler: a chain of entries, outermost first.
///
/// ```
/// use weft_proto::RemoteError;
/// let err = RemoteError::new("boom");
/// let mut buf = Vec::new();
/// err.encode(&mut buf);
/// assert_eq!(RemoteError::decode(&buf)?.message(), "boom");
/// # Ok::<(), weft_proto::ErrorPayloadError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemoteError {
    /// The chain, outermost first. Never empty when built by weft; a peer may
    /// send an empty list, which reads as an error with an empty message.
    pub entries: Vec<ErrorEntry>,
}

/// Why an error payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorPayloadError {
    /// The payload ended inside an entry or before the terminator.
    #[error("truncated error payload: {field} needs {need} bytes, {have} left")]
    Truncated {
        /// Which field was being read.
        field: &'static str,
        /// Bytes the field needs.
        need: usize,
        /// Bytes that were left.
        have: usize,
    },
    /// A Go-registered error type (tag 1 or 2) that only Go can decode.
    #[error("undecodable error: Go custom error encoding (tag {0})")]
    Undecodable(u8),
    /// A tag that no encoder produces.
    #[error("unknown error entry tag {0}")]
    UnknownTag(u8),
}

impl RemoteError {
    /// A single plain error with `message`, formatted as Go formats
    /// `errors.New(message)` so Go peers see an ordinary error.
    pub fn new(message: impl Into<String>) -> Self {
        let message = message.into();
        let format = format!("(:&errors.errorString{{s:{}}})", go_quote(&message));
        RemoteError {
            entries: vec![ErrorEntry { message, format }],
        }
    }

    /// Go's `context.Canceled`, which a Go client's `errors.Is` recognises.
    pub fn canceled() -> Self {
        Self::with_format("context canceled", GO_CANCELED_FMT)
    }

    /// Go's `context.DeadlineExceeded`.
    pub fn deadline_exceeded() -> Self {
        Self::with_format("context deadline exceeded", GO_DEADLINE_FMT)
    }

    fn with_format(message: &str, format: &str) -> Self {
        RemoteError {
            entries: vec![ErrorEntry {
                message: message.into(),
                format: format.into(),
            }],
        }
    }

    /// One entry per error in `err`'s `source()` chain, outermost first.
    pub fn from_error(err: &(dyn std::error::Error + 'static)) -> Self {
        let mut entries = Vec::new();
        let mut cur = Some(err);
        while let Some(e) = cur {
            entries.push(ErrorEntry {
                message: e.to_string(),
                format: format!("(rust:{e:?})"),
            });
            cur = e.source();
        }
        RemoteError { entries }
    }

    /// The outermost message: what the handler's error displayed as.
    pub fn message(&self) -> &str {
        self.entries.first().map_or("", |e| e.message.as_str())
    }

    /// Whether this is (or wraps) Go's `context.Canceled`.
    pub fn is_canceled(&self) -> bool {
        self.entries.iter().any(|e| e.format == GO_CANCELED_FMT)
    }

    /// Whether this is (or wraps) Go's `context.DeadlineExceeded`.
    pub fn is_deadline_exceeded(&self) -> bool {
        self.entries.iter().any(|e| e.format == GO_DEADLINE_FMT)
    }

    /// Appends the encoded payload.
    pub fn encode(&self, out: &mut impl BufMut) {
        for e in &self.entries {
            out.put_u8(TAG_PLAIN);
            put_string(out, &e.message);
            put_string(out, &e.format);
        }
        out.put_u8(TAG_END);
    }

    /// Bytes [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        1 + self
            .entries
            .iter()
            .map(|e| 9 + e.message.len() + e.format.len())
            .sum::<usize>()
    }

    /// Decodes a payload. Bytes after the terminator are ignored.
    pub fn decode(mut buf: &[u8]) -> Result<Self, ErrorPayloadError> {
        let r = &mut buf;
        let mut entries = Vec::new();
        loop {
            let Some((&tag, rest)) = r.split_first() else {
                return Err(ErrorPayloadError::Truncated {
                    field: "entry tag",
                    need: 1,
                    have: 0,
                });
            };
            *r = rest;
            match tag {
                TAG_END => return Ok(RemoteError { entries }),
                TAG_PLAIN => {
                    let message = take_string(r, "error message")?;
                    let format = take_string(r, "error format")?;
                    entries.push(ErrorEntry { message, format });
                }
                1 | 2 => return Err(ErrorPayloadError::Undecodable(tag)),
                other => return Err(ErrorPayloadError::UnknownTag(other)),
            }
        }
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

fn put_string(out: &mut impl BufMut, s: &str) {
    out.put_u32_le(s.len() as u32);
    out.put_slice(s.as_bytes());
}

/// Go strings need not be UTF-8; an error message is for people, so invalid
/// sequences are replaced rather than failing the call.
fn take_string(r: &mut &[u8], field: &'static str) -> Result<String, ErrorPayloadError> {
    let Some((len, rest)) = r.split_first_chunk::<4>() else {
        return Err(ErrorPayloadError::Truncated {
            field,
            need: 4,
            have: r.len(),
        });
    };
    let len = u32::from_le_bytes(*len) as usize;
    if len > rest.len() {
        return Err(ErrorPayloadError::Truncated {
            field,
            need: len,
            have: rest.len(),
        });
    }
    let (s, rest) = rest.split_at(len);
    *r = rest;
    Ok(String::from_utf8_lossy(s).into_owned())
}

/// `s` as Go's `strconv.Quote` (and so `%#v`) writes it, which Go clients
/// compare when they match an error with `errors.Is`. ASCII is exact: `\a`
/// `\b` `\f` `\n` `\r` `\t` `\v`, other control bytes as `\x..`. Beyond
/// ASCII Go escapes what `unicode.IsPrint` refuses (`\u....`, `\U........`):
/// here what Rust's debug format escapes (other than combining marks,
/// which both print) and every space but U+0020: the same rule as Go's,
/// but Rust's Unicode version, which may be newer than the Go peer's (a
/// character added since is escaped by Go, not here).
fn go_quote(s: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            ' '..='~' => out.push(c),
            c if c.is_ascii() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if go_prints(c) => out.push(c),
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// Whether Go's `unicode.IsPrint` holds for a non-ASCII `c` (see
/// [`go_quote`]).
fn go_prints(c: char) -> bool {
    if c.is_whitespace() || c.is_control() {
        return false;
    }
    // After a letter, a combining mark is not escaped by Rust either.
    let mut buf = [0u8; 8];
    buf[0] = b'a';
    let n = 1 + c.encode_utf8(&mut buf[1..]).len();
    let s = std::str::from_utf8(&buf[..n]).expect("utf-8");
    s.escape_debug().eq(s.chars())
}

#[cfg(test)]
mod go_quote_tests {
    use super::go_quote;

    /// Go 1.22: `fmt.Printf("%#v", s)` for each `s`.
    #[test]
    fn quotes_as_go_does() {
        let cases = [
            ("plain", r#""plain""#),
            ("a\0b", r#""a\x00b""#),
            ("\x1b[0m", r#""\x1b[0m""#),
            ("\x7f", r#""\x7f""#),
            ("\x07\x08\x0c\x0b\t\n\r", r#""\a\b\f\v\t\n\r""#),
            ("q\"b\\'", r#""q\"b\\'""#),
            ("é e\u{301} 😀 日本", "\"é e\u{301} 😀 日本\""),
            ("\u{a0}\u{2028}\u{3000}", r#""\u00a0\u2028\u3000""#),
            ("\u{200b}\u{feff}", r#""\u200b\ufeff""#),
            ("\u{e0001}", r#""\U000e0001""#),
            ("\u{85}", r#""\u0085""#),
        ];
        for (s, go) in cases {
            assert_eq!(go_quote(s), go, "{s:?}");
        }
    }
}

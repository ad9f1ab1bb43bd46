//! Application errors: Service Weaver's error list, which follows the
//! results in every response of a generated stub.
//!
//! Each entry starts with a tag: `3` for an ordinary Go error (its message
//! and a formatted form that Go's `errors.Is` compares), `1` or `2` for a Go
//! type registered with the codec (its type key, then its fields; `2` when
//! the error was a value rather than a pointer), `0` ends the list. An
//! empty list is no error. Registered types carry no length, so a reader
//! must know every type it may meet: [`RegisteredError`] names them.

use super::{CodecError, Decode, Decoder, Encode, Encoder};
use crate::{ErrorEntry, RemoteError};
use std::fmt;

const TAG_END: u8 = 0;
const TAG_POINTER: u8 = 1;
const TAG_VALUE: u8 = 2;
const TAG_EMULATED: u8 = 3;

/// A method's error type: how it travels after the results.
pub trait AppError: Sized {
    /// Appends the error list, terminator included.
    fn encode_error(&self, enc: &mut Encoder);

    /// Reads an error list; `None` when it is empty (no error).
    fn decode_error(dec: &mut Decoder<'_>) -> Result<Option<Self>, CodecError>;
}

/// A Go error type registered with Service Weaver's codec (a pointer to an
/// AutoMarshal struct): the errors a caller can receive as typed values.
///
/// Implement it on an enum of the error structs a component returns:
///
/// ```
/// use std::fmt;
/// use weft_proto::codec::{self, AppError, CodecError, Decode, Decoder, Encode, Encoder, ErrorList, RegisteredError};
///
/// /// Go: `type NotFound struct { weaver.AutoMarshal; Key string }`,
/// /// returned as `*NotFound`.
/// #[derive(Debug)]
/// struct NotFound { key: String }
///
/// const NOT_FOUND: &str = "*store.NotFound(github.com/acme/store)";
///
/// impl fmt::Display for NotFound {
///     fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
///         write!(f, "not found: {}", self.key)
///     }
/// }
///
/// impl RegisteredError for NotFound {
///     fn type_key(&self) -> &str { NOT_FOUND }
///     fn encode_fields(&self, enc: &mut Encoder) { self.key.encode(enc) }
///     fn decode_fields(key: &str, dec: &mut Decoder<'_>) -> Option<Result<Self, CodecError>> {
///         (key == NOT_FOUND).then(|| String::decode(dec).map(|key| NotFound { key }))
///     }
/// }
///
/// let err = ErrorList::registered(NotFound { key: "k".into() });
/// let mut enc = Encoder::new();
/// err.encode_error(&mut enc);
/// let back = ErrorList::<NotFound>::decode_error(&mut Decoder::new(enc.as_slice()))?.unwrap();
/// assert_eq!(back.registered_errors().next().unwrap().key, "k");
/// # Ok::<(), CodecError>(())
/// ```
pub trait RegisteredError: Sized + fmt::Display {
    /// Go's type key, `reflect.Type.String() + "(" + package path + ")"`
    /// of the pointer type, for example
    /// `*shop.NotFoundError(github.com/acme/shop)`.
    fn type_key(&self) -> &str;

    /// Appends the fields (Go's `WeaverMarshal`).
    fn encode_fields(&self, enc: &mut Encoder);

    /// Reads the fields of the type named `type_key`, or `None` when it is
    /// not one of these types.
    fn decode_fields(type_key: &str, dec: &mut Decoder<'_>) -> Option<Result<Self, CodecError>>;
}

/// No registered types: every tag 1 or 2 entry fails to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRegisteredErrors {}

impl fmt::Display for NoRegisteredErrors {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {}
    }
}

impl RegisteredError for NoRegisteredErrors {
    fn type_key(&self) -> &str {
        match *self {}
    }
    fn encode_fields(&self, _: &mut Encoder) {
        match *self {}
    }
    fn decode_fields(_: &str, _: &mut Decoder<'_>) -> Option<Result<Self, CodecError>> {
        None
    }
}

/// One entry of an error list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorListEntry<R> {
    /// An ordinary Go error (tag 3).
    Emulated(ErrorEntry),
    /// A registered type (tag 1, or 2 when `by_value`).
    Registered {
        /// Go returned the error as a value, not a pointer (tag 2).
        by_value: bool,
        /// The error.
        error: R,
    },
}

/// An application error as Go sends it: the chain (depth first, outermost
/// first), each entry an ordinary error or a registered type.
///
/// A Go client sees one entry as that error and several as
/// `errors.Join(entries…)`; [`Display`](fmt::Display) writes the same text.
///
/// ```
/// use weft_proto::codec::{self, AppError, Decoder, Encoder, ErrorList};
/// let err: ErrorList = ErrorList::new("out of stock");
/// let mut enc = Encoder::new();
/// err.encode_error(&mut enc);
/// let back = <ErrorList>::decode_error(&mut Decoder::new(&enc.finish()))?;
/// assert_eq!(back.unwrap().to_string(), "out of stock");
/// # Ok::<(), codec::CodecError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorList<R = NoRegisteredErrors> {
    /// The entries, never empty when decoded.
    pub entries: Vec<ErrorListEntry<R>>,
}

impl<R> ErrorList<R> {
    /// One ordinary error with `message`, formatted as Go formats
    /// `errors.New(message)`.
    pub fn new(message: impl Into<String>) -> Self {
        RemoteError::new(message).into()
    }

    /// One registered error, sent as a pointer (tag 1) as Go sends a
    /// `*T` error.
    pub fn registered(error: R) -> Self {
        ErrorList {
            entries: vec![ErrorListEntry::Registered {
                by_value: false,
                error,
            }],
        }
    }

    /// The registered errors in the chain, outermost first: what Go's
    /// `errors.As` would find.
    pub fn registered_errors(&self) -> impl Iterator<Item = &R> {
        self.entries.iter().filter_map(|e| match e {
            ErrorListEntry::Registered { error, .. } => Some(error),
            ErrorListEntry::Emulated(_) => None,
        })
    }

    /// Whether the chain holds Go's `context.Canceled`.
    pub fn is_canceled(&self) -> bool {
        self.emulated().any(|e| e.format == crate::GO_CANCELED_FMT)
    }

    /// Whether the chain holds Go's `context.DeadlineExceeded`.
    pub fn is_deadline_exceeded(&self) -> bool {
        self.emulated().any(|e| e.format == crate::GO_DEADLINE_FMT)
    }

    fn emulated(&self) -> impl Iterator<Item = &ErrorEntry> {
        self.entries.iter().filter_map(|e| match e {
            ErrorListEntry::Emulated(e) => Some(e),
            ErrorListEntry::Registered { .. } => None,
        })
    }
}

impl<R> From<RemoteError> for ErrorList<R> {
    fn from(e: RemoteError) -> Self {
        ErrorList {
            entries: e
                .entries
                .into_iter()
                .map(ErrorListEntry::Emulated)
                .collect(),
        }
    }
}

impl<R: fmt::Display> fmt::Display for ErrorList<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            match e {
                ErrorListEntry::Emulated(e) => f.write_str(&e.message)?,
                ErrorListEntry::Registered { error, .. } => write!(f, "{error}")?,
            }
        }
        Ok(())
    }
}

impl<R: fmt::Debug + fmt::Display> std::error::Error for ErrorList<R> {}

impl<R: RegisteredError> AppError for ErrorList<R> {
    fn encode_error(&self, enc: &mut Encoder) {
        for e in &self.entries {
            match e {
                ErrorListEntry::Emulated(e) => {
                    enc.put_u8(TAG_EMULATED);
                    e.message.encode(enc);
                    e.format.encode(enc);
                }
                ErrorListEntry::Registered { by_value, error } => {
                    enc.put_u8(if *by_value { TAG_VALUE } else { TAG_POINTER });
                    error.type_key().encode(enc);
                    error.encode_fields(enc);
                }
            }
        }
        enc.put_u8(TAG_END);
    }

    fn decode_error(dec: &mut Decoder<'_>) -> Result<Option<Self>, CodecError> {
        let mut entries = Vec::new();
        loop {
            let offset = dec.offset();
            match dec.u8()? {
                TAG_END => break,
                TAG_EMULATED => {
                    // Messages are for people: invalid UTF-8 is replaced
                    // rather than failing the call.
                    let message = String::from_utf8_lossy(dec.str_bytes()?).into_owned();
                    let format = String::from_utf8_lossy(dec.str_bytes()?).into_owned();
                    entries.push(ErrorListEntry::Emulated(ErrorEntry { message, format }));
                }
                tag @ (TAG_POINTER | TAG_VALUE) => {
                    let type_key = String::decode(dec)?;
                    match R::decode_fields(&type_key, dec) {
                        Some(error) => entries.push(ErrorListEntry::Registered {
                            by_value: tag == TAG_VALUE,
                            error: error?,
                        }),
                        // Its layout is unknown, so nothing after it can be
                        // read; the list is the last thing in a response,
                        // so what came before is kept and the type named
                        // (a Go client panics here).
                        None => {
                            entries.push(ErrorListEntry::Emulated(ErrorEntry {
                                message: format!(
                                    "an error of type {type_key}, which this side has not registered"
                                ),
                                format: String::new(),
                            }));
                            break;
                        }
                    }
                }
                tag => return Err(CodecError::UnknownErrorTag { tag, offset }),
            }
        }
        Ok((!entries.is_empty()).then_some(ErrorList { entries }))
    }
}

/// Ordinary errors only (tag 3); an entry of a registered type reads as one
/// that names its type, and ends the list.
impl AppError for RemoteError {
    fn encode_error(&self, enc: &mut Encoder) {
        // The same bytes as an error response's payload.
        self.encode(&mut enc.buf);
    }

    fn decode_error(dec: &mut Decoder<'_>) -> Result<Option<Self>, CodecError> {
        let list = ErrorList::<NoRegisteredErrors>::decode_error(dec)?;
        Ok(list.map(|l| RemoteError {
            entries: l
                .entries
                .into_iter()
                .map(|e| match e {
                    ErrorListEntry::Emulated(e) => e,
                    ErrorListEntry::Registered { error, .. } => match error {},
                })
                .collect(),
        }))
    }
}

//! Service Weaver's argument and result encoding (`runtime/codegen`).
//!
//! Typed components send their arguments and results in the encoding that
//! `weaver generate` writes into Go stubs: no type tags, no field names, no
//! varints. Values are written back to back in declaration order, integers
//! little-endian at fixed width, strings and slices behind an `i32` length
//! (`-1` is Go's nil), pointers behind a presence byte, and a result list
//! ends with Service Weaver's error list ([`AppError`]). A reader must know
//! the signature; the component macro (`weft-macros`) writes both sides.
//!
//! | Go | Rust | bytes |
//! | --- | --- | --- |
//! | `bool` | `bool` | `00` / `01` |
//! | `int8` … `int64`, `uint8` … `uint64` | `i8` … `u64` | fixed width, LE |
//! | `int`, `uint` | `i64`/`isize`, `u64`/`usize` | 8 bytes, LE |
//! | `float32`, `float64` | `f32`, `f64` | IEEE-754 bits (NaN payloads kept) |
//! | `complex64`, `complex128` | [`Complex<f32>`], [`Complex<f64>`] | re, im |
//! | `rune` | `char` | 4 bytes |
//! | `string` | `String`, `&str` | `u32` length + bytes |
//! | `[]T` | `Vec<T>`, `&[T]`, ([`Nilable`] for nil) | `i32` length + elements |
//! | `[]byte` | `Vec<u8>`, [`Bytes`] | `i32` length + bytes |
//! | `[N]T` | `[T; N]` | N elements, no length |
//! | `map[K]V` | `HashMap`, `BTreeMap` | `i32` length + key, value… |
//! | `*T` | `Option<Box<T>>`, `Option<T>` for a small `T` | `00`, or `01` + T |
//! | `time.Duration` | `std::time::Duration` | `i64` nanoseconds |
//! | `time.Time` | [`GoTime`] | Go's `MarshalBinary`, length-prefixed |
//! | AutoMarshal struct | `#[derive(Encode, Decode)]` struct | fields in order |
//! | named integer | `#[derive(Encode, Decode)] #[repr(u16)] enum` | the integer |
//!
//! Go strings need not be UTF-8; Rust's must. A `String` refuses invalid
//! UTF-8 with [`CodecError::InvalidUtf8`]; decode such a value as
//! `Vec<u8>`, whose bytes on the wire are the same.
//!
//! Decoding never panics and never reserves more than the remaining input
//! can hold: a length of 2^31 on a 10-byte input fails as truncated before
//! anything is allocated. As in Go, bytes after the last value are ignored.
//!
//! ```
//! use weft_proto::codec::{self, Decoder, Encoder, Encode, Decode};
//! use std::collections::BTreeMap;
//!
//! let mut enc = Encoder::new();
//! "cart-7".encode(&mut enc);
//! vec![1i64, -1].encode(&mut enc);
//! BTreeMap::from([("a".to_string(), 1u16)]).encode(&mut enc);
//! let bytes = enc.finish();
//! assert_eq!(&bytes[..10], b"\x06\x00\x00\x00cart-7");
//!
//! let mut dec = Decoder::new(&bytes);
//! assert_eq!(String::decode(&mut dec)?, "cart-7");
//! assert_eq!(Vec::<i64>::decode(&mut dec)?, [1, -1]);
//! assert_eq!(BTreeMap::<String, u16>::decode(&mut dec)?["a"], 1);
//!
//! // A hostile length fails before anything is allocated.
//! let err = codec::decode::<Vec<u64>>(b"\xff\xff\xff\x7f").unwrap_err();
//! assert!(matches!(err, codec::CodecError::Truncated { .. }));
//! # Ok::<(), codec::CodecError>(())
//! ```

mod errors;
mod hash;
mod std_impls;
mod time;

pub use bytes::Bytes;
pub use errors::{AppError, ErrorList, ErrorListEntry, NoRegisteredErrors, RegisteredError};
pub use hash::{Hasher, shard_key};
pub use std_impls::{Complex, Nilable};
pub use time::GoTime;

use bytes::{BufMut, BytesMut};

/// Why a value could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The input ended inside a value.
    #[error("codec: {what} needs {need} bytes at offset {offset}, {have} left")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes it needs.
        need: usize,
        /// Bytes that were left.
        have: usize,
        /// Where in the input.
        offset: usize,
    },
    /// A bool byte other than 0 or 1 (Go: "unable to decode bool").
    #[error("codec: invalid bool byte {byte:#04x} at offset {offset}")]
    InvalidBool {
        /// The byte.
        byte: u8,
        /// Where in the input.
        offset: usize,
    },
    /// A length below -1 (-1 is nil).
    #[error("codec: negative length {len} at offset {offset}")]
    NegativeLength {
        /// The length read.
        len: i32,
        /// Where in the input.
        offset: usize,
    },
    /// A string that is not UTF-8.
    #[error("codec: string at offset {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// Where in the input.
        offset: usize,
    },
    /// A value the Rust type cannot hold (a negative `Duration`, an
    /// unknown enum discriminant, a `char` that is not a scalar value).
    #[error("codec: {value} is out of range for {ty}")]
    OutOfRange {
        /// The Rust type.
        ty: &'static str,
        /// The value read.
        value: i128,
    },
    /// A `time.Time` in a format Go never writes.
    #[error("codec: invalid time.Time encoding: {0}")]
    InvalidTime(&'static str),
    /// Containers whose elements take more memory than their input allows
    /// ([`MAX_MEMORY_RATIO`]): a `None` is one byte on the wire but a whole
    /// `Option<T>` in a vector, so a request within the message limit
    /// could otherwise take many times that limit.
    #[error(
        "codec: the value at offset {offset} would take {need} bytes of memory, past \
         the {budget} its {input}-byte input allows (a pointer in Go is an \
         `Option<Box<T>>` here)"
    )]
    TooMuchMemory {
        /// What the container being decoded would take.
        need: usize,
        /// What was left of the budget, [`MAX_MEMORY_RATIO`] bytes per
        /// input byte.
        budget: usize,
        /// The input's length.
        input: usize,
        /// Where in the input.
        offset: usize,
    },
    /// Containers (boxes, slices, maps) nested deeper than [`MAX_DEPTH`]:
    /// a recursive type's value as long as its input allows would take
    /// the decoding thread's whole stack, and a stack overflow aborts the
    /// process.
    #[error("codec: values nested more than {max} deep at offset {offset}")]
    TooDeep {
        /// The limit, [`MAX_DEPTH`].
        max: u32,
        /// Where in the input.
        offset: usize,
    },
    /// An error list entry with a tag no encoder writes.
    #[error("codec: unknown error list tag {tag} at offset {offset}")]
    UnknownErrorTag {
        /// The tag.
        tag: u8,
        /// Where in the input.
        offset: usize,
    },
}

/// A value in Service Weaver's encoding.
///
/// Derive it (`#[derive(Encode)]`, re-exported by the drivers) for a
/// struct whose fields are in the Go struct's order; implement it by hand
/// for a type whose Go form differs from its Rust one:
///
/// ```
/// use weft_proto::codec::{self, CodecError, Decode, Decoder, Encode, Encoder};
///
/// /// Travels as Go's `int64` cents.
/// #[derive(Debug, PartialEq)]
/// struct Euros(f64);
///
/// impl Encode for Euros {
///     fn encode(&self, enc: &mut Encoder) {
///         ((self.0 * 100.0).round() as i64).encode(enc);
///     }
///     fn encode_zero(enc: &mut Encoder) {
///         i64::encode_zero(enc);
///     }
/// }
///
/// impl Decode for Euros {
///     fn decode(dec: &mut Decoder<'_>) -> Result<Self, CodecError> {
///         Ok(Euros(i64::decode(dec)? as f64 / 100.0))
///     }
/// }
///
/// assert_eq!(codec::decode::<Euros>(&codec::encode(&Euros(2.5)))?, Euros(2.5));
/// # Ok::<(), CodecError>(())
/// ```
pub trait Encode {
    /// Appends the value.
    fn encode(&self, enc: &mut Encoder);

    /// Appends Go's zero value of this type: what a Go server stub sends in
    /// place of the results when the method failed.
    fn encode_zero(enc: &mut Encoder)
    where
        Self: Sized;

    /// Appends the elements of a slice, without the length. Overridden by
    /// `u8` to copy instead of looping.
    #[doc(hidden)]
    fn encode_elements(items: &[Self], enc: &mut Encoder)
    where
        Self: Sized,
    {
        items.iter().for_each(|x| x.encode(enc));
    }
}

/// A value read back from Service Weaver's encoding (see [`Encode`] for
/// an implementation by hand).
pub trait Decode: Sized {
    /// The fewest bytes a value takes on the wire: a slice's or map's
    /// length is checked against the bytes left with it. 1 unless a value
    /// can take none (`()`, an empty struct, `[T; 0]`, and what is made of
    /// only those: Go's `struct{}`), where it is 0.
    const MIN_ENCODED_LEN: usize = 1;

    /// Reads one value.
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, CodecError>;

    /// Reads `n` elements, `n` checked against the bytes left (with
    /// [`MIN_ENCODED_LEN`](Self::MIN_ENCODED_LEN)) and the memory budget.
    /// Overridden by `u8` to copy instead of looping.
    #[doc(hidden)]
    fn decode_elements(dec: &mut Decoder<'_>, n: usize) -> Result<Vec<Self>, CodecError> {
        let mut v = Vec::with_capacity(cautious::<Self>(n));
        for _ in 0..n {
            v.push(Self::decode(dec)?);
        }
        Ok(v)
    }
}

/// At most this much is reserved ahead of decoding a container; past it
/// the container grows as its elements actually arrive. An element may be
/// far larger in memory than the byte it needs on the wire.
const MAX_PREALLOC: usize = 64 * 1024;

/// The capacity to reserve for `n` elements of `T` announced by a length.
pub(crate) fn cautious<T>(n: usize) -> usize {
    n.min(MAX_PREALLOC / size_of::<T>().max(1))
}

/// Encodes one value.
pub fn encode<T: Encode + ?Sized>(value: &T) -> Bytes {
    let mut enc = Encoder::new();
    value.encode(&mut enc);
    enc.finish()
}

/// Decodes one value from the start of `input`; trailing bytes are ignored,
/// as Go's generated stubs ignore them.
pub fn decode<T: Decode>(input: &[u8]) -> Result<T, CodecError> {
    T::decode(&mut Decoder::new(input))
}

/// Writes values back to back into a growing buffer.
#[derive(Debug, Default)]
pub struct Encoder {
    pub(crate) buf: BytesMut,
}

impl Encoder {
    /// An empty encoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty encoder with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        Encoder {
            buf: BytesMut::with_capacity(n),
        }
    }

    /// The bytes written so far.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    /// The encoded bytes.
    pub fn finish(self) -> Bytes {
        self.buf.freeze()
    }

    /// Appends raw bytes (no length).
    pub fn put_raw(&mut self, bytes: &[u8]) {
        self.buf.put_slice(bytes);
    }

    /// Appends one byte.
    pub fn put_u8(&mut self, v: u8) {
        self.buf.put_u8(v);
    }

    /// Appends a little-endian `u16`.
    pub fn put_u16(&mut self, v: u16) {
        self.buf.put_u16_le(v);
    }

    /// Appends a little-endian `u32`.
    pub fn put_u32(&mut self, v: u32) {
        self.buf.put_u32_le(v);
    }

    /// Appends a little-endian `u64`.
    pub fn put_u64(&mut self, v: u64) {
        self.buf.put_u64_le(v);
    }

    /// Appends a slice or map length, `None` for Go's nil (`-1`).
    ///
    /// # Panics
    /// If `len` exceeds `i32::MAX`, which Go's reader would refuse (Go's
    /// encoder panics too); frame limits stop such payloads long before.
    pub fn put_len(&mut self, len: Option<usize>) {
        let n = match len {
            None => -1,
            Some(n) => i32::try_from(n).expect("codec: length above i32::MAX"),
        };
        self.buf.put_i32_le(n);
    }

    /// Appends a string: a `u32` length, then the bytes.
    pub fn put_str(&mut self, s: &[u8]) {
        self.put_len(Some(s.len()));
        self.buf.put_slice(s);
    }
}

/// How deep boxes, slices and maps may nest in one decoded value (as
/// protobuf's and serde_json's decoders limit theirs, to 100 and 128).
/// Only a recursive type (`Option<Box<Node>>`, `Vec<Node>` inside `Node`)
/// comes near it; past it decoding fails with [`CodecError::TooDeep`].
pub const MAX_DEPTH: u32 = 128;

/// Bytes of memory the containers of one decoded value may take per byte
/// of input (plus [`MEMORY_ALLOWANCE`]), counting each vector's and map's
/// elements and each box at their size in memory. Go's own decoder
/// allocates at most 8 bytes per input byte (a nil pointer in a slice);
/// the widest common Rust shape, `Vec<Option<String>>` of `None`s, takes 24.
/// Past it decoding fails with [`CodecError::TooMuchMemory`].
pub const MAX_MEMORY_RATIO: usize = 32;

/// Memory any value may take whatever its input's size, so that small
/// inputs of wide types (`[Option<[u8; 64]>]` of `None`s) still decode.
pub const MEMORY_ALLOWANCE: usize = 64 * 1024;

/// Reads values from the front of a byte slice.
#[derive(Debug, Clone)]
pub struct Decoder<'a> {
    buf: &'a [u8],
    total: usize,
    /// Containers being decoded around the current value.
    depth: u32,
    /// Bytes of memory containers may still take ([`MAX_MEMORY_RATIO`]).
    budget: usize,
}

impl<'a> Decoder<'a> {
    /// A decoder over `input` (a `&Bytes` or `&BytesMut` derefs to it).
    pub fn new(input: &'a [u8]) -> Self {
        Decoder {
            buf: input,
            total: input.len(),
            depth: 0,
            budget: input
                .len()
                .saturating_mul(MAX_MEMORY_RATIO)
                .saturating_add(MEMORY_ALLOWANCE),
        }
    }

    /// Accounts for `n` values of `size` bytes that a container is about to
    /// hold, against the memory this input allows ([`MAX_MEMORY_RATIO`]).
    /// Containers call it before decoding their elements; an implementation
    /// by hand that allocates per element should too.
    pub fn reserve(&mut self, n: usize, size: usize) -> Result<(), CodecError> {
        let need = n.saturating_mul(size);
        if need > self.budget {
            return Err(CodecError::TooMuchMemory {
                need,
                budget: self.budget,
                input: self.total,
                offset: self.offset(),
            });
        }
        self.budget -= need;
        Ok(())
    }

    /// Decodes a container's contents with `f`, one level deeper: at most
    /// [`MAX_DEPTH`] levels, so that no input can overflow the stack.
    pub fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, CodecError>,
    ) -> Result<T, CodecError> {
        if self.depth >= MAX_DEPTH {
            return Err(CodecError::TooDeep {
                max: MAX_DEPTH,
                offset: self.offset(),
            });
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Bytes read so far: where the next value starts.
    pub fn offset(&self) -> usize {
        self.total - self.buf.len()
    }

    /// The unread bytes.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        if n > self.buf.len() {
            return Err(CodecError::Truncated {
                what,
                need: n,
                have: self.buf.len(),
                offset: self.offset(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Takes the next `N` bytes as an array.
    pub fn take_array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], CodecError> {
        let b = self.take(N, what)?;
        Ok(b.try_into().expect("take returned N bytes"))
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take_array::<1>("u8")?[0])
    }

    /// Reads a bool (0 or 1).
    pub fn bool(&mut self) -> Result<bool, CodecError> {
        let offset = self.offset();
        match self.take_array::<1>("bool")?[0] {
            0 => Ok(false),
            1 => Ok(true),
            byte => Err(CodecError::InvalidBool { byte, offset }),
        }
    }

    /// Reads a slice or map length: `None` for nil (`-1`). A length larger
    /// than the bytes left is refused here, since every element takes at
    /// least `min_element` bytes: nothing is reserved for a lie.
    pub fn read_len(&mut self, min_element: usize) -> Result<Option<usize>, CodecError> {
        let offset = self.offset();
        let n = i32::from_le_bytes(self.take_array::<4>("length")?);
        match n {
            -1 => Ok(None),
            n if n < 0 => Err(CodecError::NegativeLength { len: n, offset }),
            n => {
                let n = n as usize;
                let need = n.saturating_mul(min_element);
                if need > self.buf.len() {
                    return Err(CodecError::Truncated {
                        what: "elements",
                        need,
                        have: self.buf.len(),
                        offset: self.offset(),
                    });
                }
                Ok(Some(n))
            }
        }
    }

    /// Reads a string's or byte slice's bytes (nil reads as empty, as Go's
    /// `Decoder.String` does).
    pub fn str_bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self.read_len(1)?.unwrap_or(0);
        self.take(n, "string")
    }
}

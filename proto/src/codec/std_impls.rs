//! `Encode` and `Decode` for the standard types, as Go's generated code
//! writes the Go type each one stands for.

use super::{CodecError, Decode, Decoder, Encode, Encoder};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash};
use std::time::Duration;

macro_rules! int {
    ($($t:ty),*) => {$(
        impl Encode for $t {
            fn encode(&self, enc: &mut Encoder) {
                enc.put_raw(&self.to_le_bytes());
            }
            fn encode_zero(enc: &mut Encoder) {
                enc.put_raw(&[0; size_of::<$t>()]);
            }
        }
        impl Decode for $t {
            fn decode(dec: &mut Decoder<'_>) -> Result<Self, CodecError> {
                Ok(<$t>::from_le_bytes(dec.take_array(stringify!($t))?))
            }
        }
    )*};
}
int!(i8, i16, u16, i32, u32, i64, u64);

impl Encode for u8 {
    fn encode(&self, enc: &mut Encoder) {
        enc.put_u8(*self);
    }
    fn encode_zero(enc: &mut Encoder) {
        enc.put_u8(0);
    }
    fn encode_elements(items: &[u8], enc: &mut Encoder) {
        enc.put_raw(items);
    }
}

impl Decode for u8 {
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, CodecError> {
        dec.u8()
    }
    fn decode_elements(dec: &mut Decoder<'_>, n: usize) -> Result<Vec<u8>, CodecError> {
        Ok(dec.take(n, "bytes")?.to_vec())
    }
}

// Go's `int` and `uint` are 8 bytes on the wire whatever the platform.
macro_rules! word {
    ($t:ty, $wire:ty) => {
        impl Encode for $t {
            fn encode(&self, enc: &mut Encoder) {
                // Lossless: the pointer width is at most 64 bits.
                (*self as $wire).encode(enc);
            }
            fn encode_zero(enc: &mut Encoder) {
                <$wire>::encode_zero(enc);
            }
        }
        impl Decode for $t {
            fn decode(dec: &mut Decoder<'_>) -> Result<Self, CodecError> {
                let v = <$wire>::decode(dec)?;
                <$t>::try_from(v).map_err(|_| CodecError::OutOfRange {
                    ty: stringify!($t),
                    value: v as i128,
                })
            }
        }
    };
}
word!(isize, i64);
word!(usize, u64);

macro_rules! float {
    ($($t:ty),*) => {$(
        impl Encode for $t {
            fn encode(&self, enc: &mut Encoder) {
                // Bit copies: -0 and every NaN payload survive, as in Go.
                self.to_bits().encode(enc);
            }
            fn encode_zero(enc: &mut Encoder) {
                (0.0 as $t).encode(enc);
            }
        }
        impl Decode for $t {
            fn decode(dec: &mut Decoder<'_>) -> Result<Self, CodecError> {
                Ok(<$t>::from_bits(Decode::decode(dec)?))
            }
        }
    )*};
}
float!(f32, f64);

impl Encode for bool {
    fn encode(&self, enc: &mut Encoder) {
        enc.put_u8(u8::from(*self));
    }
    fn encode_zero(enc: &mut Encoder) {
        enc.put_u8(0);
    }
}

impl Decode for bool {
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, CodecError> {
        dec.bool()
    }
}

/// Go's `rune` (an `int32`).
impl Encode for char {
    fn encode(&self, enc: &mut Encoder) {
        (*self as i32).encode(enc);
    }
    fn encode_zero(enc: &mut Encoder) {
        i32::encode_zero(enc);
    }
}

impl Decode for char {
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, CodecError> {
        let v = i32::decode(dec)?;
        u32::try_from(v)
            .ok()
            .and_then(char::from_u32)
            .ok_or(CodecError::OutOfRange {
                ty: "char",
                value: v.into(),
            })
    }
}

/// Go's `complex64` (`Complex<f32>`) and `complex128` (`Complex<f64>`):
/// the real part, then the imaginary part.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Complex<F> {
    /// The real part.
    pub re: F,
    /// The imaginary part.
    pub im: F,
}

impl<F: Encode> Encode for Complex<F> {
    fn encode(&self, enc: &mut Encoder) {
        self.re.encode(enc);
        self.im.encode(enc);
    }
    fn encode_zero(enc: &mut Encoder) {
        F::encode_zero(enc);
        F::encode_zero(enc);
    }
}

impl<F: Decode> Decode for Complex<F> {
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, CodecError> {
        Ok(Complex {
            re: F::decode(dec)?,
            im: F::decode(dec)?,
        })
    }
}

impl Encode for str {
    fn encode(&self, enc: &mut Encoder) {
        enc.put_str(self.as_bytes());
    }
}

impl Encode for String {
    fn encode(&self, enc: &mut Encoder) {
        enc.put_str(self.as_bytes());
    }
    fn encode_zero(enc: &mut Encoder) {
        enc.put_str(b"");
    }
}

impl Decode for String {
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, CodecError> {
        let offset = dec.offset();
        let bytes = dec.str_bytes()?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| CodecError::InvalidUtf8 { offset })
    }
}

impl<T: Encode> Encode for [T] {
    fn encode(&self, enc: &mut Encoder) {
        enc.put_len(Some(self.len()));
        T::encode_elements(self, enc);
    }
}

/// A Go slice. An empty `Vec` is sent as an empty slice; nil (`-1`) reads
/// as empty. Use [`Nilable`] where nil and empty must differ.
impl<T: Encode> Encode for Vec<T> {
    fn encode(&self, enc: &mut Encoder) {
        self.as_slice().encode(enc);
    }
    fn encode_zero(enc: &mut Encoder) {
        enc.put_len(None);
    }
}

impl<T: Decode> Decode for Vec<T> {
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, CodecError> {
        match dec.read_len(T::MIN_ENCODED_LEN)? {
            None => Ok(Vec::new()),
            Some(n) => {
                // Elements that take no bytes are charged one each, which
                // bounds the work a length claims.
                dec.reserve(n, size_of::<T>().max(1))?;
                dec.nested(|dec| T::decode_elements(dec, n))
            }
        }
    }
}

/// `[]byte` without a copy on encode; decoding copies out of the input.
impl Encode for Bytes {
    fn encode(&self, enc: &mut Encoder) {
        self[..].encode(enc);
    }
    fn encode_zero(enc: &mut Encoder) {
        enc.put_len(None);
    }
}

impl Decode for Bytes {
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, CodecError> {
        Ok(Bytes::copy_from_slice(dec.str_bytes()?))
    }
}

impl<T: Encode, const N: usize> Encode for [T; N] {
    fn encode(&self, enc: &mut Encoder) {
        T::encode_elements(self, enc);
    }
    fn encode_zero(enc: &mut Encoder) {
        (0..N).for_each(|_| T::encode_zero(enc));
    }
}

impl<T: Decode, const N: usize> Decode for [T; N] {
    const MIN_ENCODED_LEN: usize = N.saturating_mul(T::MIN_ENCODED_LEN);
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, CodecError> {
        if T::MIN_ENCODED_LEN == 0 {
            // Elements of no bytes cost work all the same: charged, so
            // that a slice of such arrays cannot multiply it unbounded.
            dec.reserve(N, 1)?;
        }
        let v = T::decode_elements(dec, N)?;
        Ok(v.try_into().unwrap_or_else(|_| unreachable!("decoded N")))
    }
}

fn encode_entries<'a, K: Encode + 'a, V: Encode + 'a>(
    len: usize,
    entries: impl Iterator<Item = (&'a K, &'a V)>,
    enc: &mut Encoder,
) {
    enc.put_len(Some(len));
    for (k, v) in entries {
        k.encode(enc);
        v.encode(enc);
    }
}

/// A Go map, entries in this map's iteration order (Go's order is random
/// too). Nil reads as empty.
impl<K: Encode, V: Encode, S: BuildHasher> Encode for HashMap<K, V, S> {
    fn encode(&self, enc: &mut Encoder) {
        encode_entries(self.len(), self.iter(), enc);
    }
    fn encode_zero(enc: &mut Encoder) {
        enc.put_len(None);
    }
}

/// A Go map, entries in key order. Nil reads as empty.
impl<K: Encode, V: Encode> Encode for BTreeMap<K, V> {
    fn encode(&self, enc: &mut Encoder) {
        encode_entries(self.len(), self.iter(), enc);
    }
    fn encode_zero(enc: &mut Encoder) {
        enc.put_len(None);
    }
}

impl<K: Decode + Eq + Hash, V: Decode, S: BuildHasher + Default> Decode for HashMap<K, V, S> {
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, CodecError> {
        let n = dec
            .read_len(K::MIN_ENCODED_LEN.saturating_add(V::MIN_ENCODED_LEN))?
            .unwrap_or(0);
        dec.reserve(n, size_of::<(K, V)>().max(1))?;
        let mut m = HashMap::with_capacity_and_hasher(super::cautious::<(K, V)>(n), S::default());
        dec.nested(|dec| {
            for _ in 0..n {
                // A repeated key is not an error: the last one wins, as in Go.
                m.insert(K::decode(dec)?, V::decode(dec)?);
            }
            Ok(())
        })?;
        Ok(m)
    }
}

impl<K: Decode + Ord, V: Decode> Decode for BTreeMap<K, V> {
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, CodecError> {
        let n = dec
            .read_len(K::MIN_ENCODED_LEN.saturating_add(V::MIN_ENCODED_LEN))?
            .unwrap_or(0);
        dec.reserve(n, size_of::<(K, V)>().max(1))?;
        let mut m = BTreeMap::new();
        dec.nested(|dec| {
            for _ in 0..n {
                m.insert(K::decode(dec)?, V::decode(dec)?);
            }
            Ok(())
        })?;
        Ok(m)
    }
}

/// A Go slice, map or `[]byte` whose nil (`None`, `-1` on the wire) differs
/// from empty.
///
/// ```
/// use weft_proto::codec::{self, Nilable};
/// assert_eq!(&codec::encode(&Nilable::<Vec<u8>>(None))[..], b"\xff\xff\xff\xff");
/// assert_eq!(&codec::encode(&Nilable(Some(Vec::<u8>::new())))[..], b"\0\0\0\0");
/// assert_eq!(codec::decode::<Nilable<Vec<u8>>>(b"\xff\xff\xff\xff")?, Nilable(None));
/// # Ok::<(), codec::CodecError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Nilable<T>(pub Option<T>);

impl<T: Encode> Encode for Nilable<T> {
    fn encode(&self, enc: &mut Encoder) {
        match &self.0 {
            Some(v) => v.encode(enc),
            None => enc.put_len(None),
        }
    }
    fn encode_zero(enc: &mut Encoder) {
        enc.put_len(None);
    }
}

impl<T: Decode> Decode for Nilable<T> {
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, CodecError> {
        if dec.rest().starts_with(&[0xff; 4]) {
            dec.take(4, "length")?;
            return Ok(Nilable(None));
        }
        T::decode(dec).map(|v| Nilable(Some(v)))
    }
}

/// A Go pointer: a presence byte, then the value.
impl<T: Encode> Encode for Option<T> {
    fn encode(&self, enc: &mut Encoder) {
        match self {
            None => enc.put_u8(0),
            Some(v) => {
                enc.put_u8(1);
                v.encode(enc);
            }
        }
    }
    fn encode_zero(enc: &mut Encoder) {
        enc.put_u8(0);
    }
}

impl<T: Decode> Decode for Option<T> {
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, CodecError> {
        if dec.bool()? {
            T::decode(dec).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Transparent, so that `Option<Box<T>>` is a pointer to a recursive or
/// large `T`.
impl<T: Encode> Encode for Box<T> {
    fn encode(&self, enc: &mut Encoder) {
        (**self).encode(enc);
    }
    fn encode_zero(enc: &mut Encoder) {
        T::encode_zero(enc);
    }
}

impl<T: Decode> Decode for Box<T> {
    const MIN_ENCODED_LEN: usize = T::MIN_ENCODED_LEN;
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, CodecError> {
        dec.reserve(1, size_of::<T>())?;
        dec.nested(T::decode).map(Box::new)
    }
}

impl<T: Encode + ?Sized> Encode for &T {
    fn encode(&self, enc: &mut Encoder) {
        (**self).encode(enc);
    }
    fn encode_zero(_: &mut Encoder) {
        unreachable!("a reference has no zero value; encode the owned type's")
    }
}

/// Go's `time.Duration`: `int64` nanoseconds. Durations past Go's range
/// (about 292 years) are sent as its maximum; a negative one cannot be
/// read into a `Duration` (decode an `i64` instead).
impl Encode for Duration {
    fn encode(&self, enc: &mut Encoder) {
        i64::try_from(self.as_nanos())
            .unwrap_or(i64::MAX)
            .encode(enc);
    }
    fn encode_zero(enc: &mut Encoder) {
        i64::encode_zero(enc);
    }
}

impl Decode for Duration {
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, CodecError> {
        let n = i64::decode(dec)?;
        u64::try_from(n)
            .map(Duration::from_nanos)
            .map_err(|_| CodecError::OutOfRange {
                ty: "Duration",
                value: n.into(),
            })
    }
}

/// Nothing: a method with no results but its error.
impl Encode for () {
    fn encode(&self, _: &mut Encoder) {}
    fn encode_zero(_: &mut Encoder) {}
}

impl Decode for () {
    const MIN_ENCODED_LEN: usize = 0;
    fn decode(_: &mut Decoder<'_>) -> Result<Self, CodecError> {
        Ok(())
    }
}

macro_rules! tuple {
    ($($n:ident),+) => {
        /// Its elements back to back, as a Go method's arguments travel.
        impl<$($n: Encode),+> Encode for ($($n,)+) {
            #[allow(non_snake_case)]
            fn encode(&self, enc: &mut Encoder) {
                let ($($n,)+) = self;
                $($n.encode(enc);)+
            }
            fn encode_zero(enc: &mut Encoder) {
                $($n::encode_zero(enc);)+
            }
        }
        impl<$($n: Decode),+> Decode for ($($n,)+) {
            const MIN_ENCODED_LEN: usize = 0usize $(.saturating_add($n::MIN_ENCODED_LEN))+;
            fn decode(dec: &mut Decoder<'_>) -> Result<Self, CodecError> {
                Ok(($($n::decode(dec)?,)+))
            }
        }
    };
}
tuple!(A);
tuple!(A, B);
tuple!(A, B, C);
tuple!(A, B, C, D);
tuple!(A, B, C, D, E);
tuple!(A, B, C, D, E, F);
tuple!(A, B, C, D, E, F, G);
tuple!(A, B, C, D, E, F, G, H);

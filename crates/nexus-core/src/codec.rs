//! The compact binary encoding shared by stored records and wire messages.
//!
//! Everything Nexus writes is a sequence of LEB128 varints, fixed-size byte arrays and
//! length-prefixed byte strings. [`Reader`] checks every length against a limit the caller
//! names before it allocates, so hostile input can make decoding fail but never panic or
//! allocate more than the limit.

use thiserror::Error;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended in the middle of a field.
    #[error("input ended early while reading {what}")]
    Truncated {
        /// The field being read.
        what: &'static str,
    },
    /// A length or count is larger than the limit for that field.
    #[error("{what} has length {len}, over the limit of {max}")]
    TooLong {
        /// The field being read.
        what: &'static str,
        /// The length the input claimed.
        len: u64,
        /// The largest length accepted.
        max: u64,
    },
    /// A varint was longer than ten bytes or overflowed 64 bits.
    #[error("malformed varint while reading {what}")]
    BadVarint {
        /// The field being read.
        what: &'static str,
    },
    /// A tag that this version does not know.
    #[error("unknown {what} tag {tag}")]
    UnknownTag {
        /// The kind of tagged value.
        what: &'static str,
        /// The tag found.
        tag: u64,
    },
    /// A format version this build cannot read.
    #[error("unsupported {what} version {version}; this build reads version {supported}")]
    UnsupportedVersion {
        /// The versioned structure.
        what: &'static str,
        /// The version found.
        version: u64,
        /// The version this build reads.
        supported: u64,
    },
    /// Bytes were left after a complete value.
    #[error("{count} unexpected bytes after {what}")]
    TrailingBytes {
        /// The value that was complete.
        what: &'static str,
        /// How many bytes were left over.
        count: usize,
    },
    /// A field decoded but its value is not allowed.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Appends encoded values to a byte buffer.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn u8(&mut self, value: u8) -> &mut Self {
        self.buf.push(value);
        self
    }

    pub(crate) fn varint(&mut self, mut value: u64) -> &mut Self {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                self.buf.push(byte);
                return self;
            }
            self.buf.push(byte | 0x80);
        }
    }

    pub(crate) fn len(&mut self, len: usize) -> &mut Self {
        self.varint(len as u64)
    }

    /// Writes bytes with no length prefix (the reader knows the size).
    pub(crate) fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self
    }

    /// Writes a length prefix, then the bytes.
    pub(crate) fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.len(bytes.len()).raw(bytes)
    }

    pub(crate) fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads encoded values from a byte slice, checking every bound.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        let byte = *self
            .buf
            .get(self.pos)
            .ok_or(DecodeError::Truncated { what })?;
        self.pos += 1;
        Ok(byte)
    }

    pub(crate) fn varint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        for shift in (0..70).step_by(7) {
            let byte = self.u8(what)?;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(DecodeError::BadVarint { what });
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::BadVarint { what })
    }

    /// Reads a length or count and checks it against `max`.
    pub(crate) fn len(&mut self, max: usize, what: &'static str) -> Result<usize, DecodeError> {
        let len = self.varint(what)?;
        if len > max as u64 {
            return Err(DecodeError::TooLong {
                what,
                len,
                max: max as u64,
            });
        }
        Ok(len as usize)
    }

    /// Reads a count of items each at least `min_item_size` bytes long, so a count the
    /// remaining input cannot hold fails before anything is allocated for it.
    pub(crate) fn count(
        &mut self,
        max: usize,
        min_item_size: usize,
        what: &'static str,
    ) -> Result<usize, DecodeError> {
        let count = self.len(max, what)?;
        if count.saturating_mul(min_item_size) > self.remaining() {
            return Err(DecodeError::Truncated { what });
        }
        Ok(count)
    }

    pub(crate) fn raw(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < len {
            return Err(DecodeError::Truncated { what });
        }
        let bytes = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(bytes)
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.raw(N, what)?);
        Ok(out)
    }

    pub(crate) fn bytes(
        &mut self,
        max: usize,
        what: &'static str,
    ) -> Result<&'a [u8], DecodeError> {
        let len = self.len(max, what)?;
        self.raw(len, what)
    }

    pub(crate) fn str(&mut self, max: usize, what: &'static str) -> Result<&'a str, DecodeError> {
        let bytes = self.bytes(max, what)?;
        std::str::from_utf8(bytes).map_err(|_| DecodeError::Invalid {
            what,
            reason: "not UTF-8".into(),
        })
    }

    /// Fails unless every byte was consumed.
    pub(crate) fn finish(self, what: &'static str) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes { what, count }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_the_edges() {
        for value in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX - 1, u64::MAX] {
            let mut w = Writer::new();
            w.varint(value);
            let bytes = w.finish();
            let mut r = Reader::new(&bytes);
            assert_eq!(r.varint("v"), Ok(value));
            assert_eq!(r.finish("v"), Ok(()));
        }
    }

    #[test]
    fn overlong_varints_are_rejected() {
        let bytes = [0xffu8; 11];
        assert_eq!(
            Reader::new(&bytes).varint("v"),
            Err(DecodeError::BadVarint { what: "v" })
        );
        // Ten bytes whose last one carries more than the 64th bit.
        let mut bytes = [0xffu8; 10];
        bytes[9] = 0x02;
        assert_eq!(
            Reader::new(&bytes).varint("v"),
            Err(DecodeError::BadVarint { what: "v" })
        );
    }

    #[test]
    fn lengths_over_the_limit_fail_before_allocating() {
        let mut w = Writer::new();
        w.len(1 << 40);
        let bytes = w.finish();
        assert!(matches!(
            Reader::new(&bytes).bytes(1024, "blob"),
            Err(DecodeError::TooLong { .. })
        ));
        let mut w = Writer::new();
        w.len(1000);
        let bytes = w.finish();
        assert_eq!(
            Reader::new(&bytes).count(10_000, 32, "list"),
            Err(DecodeError::Truncated { what: "list" })
        );
    }
}

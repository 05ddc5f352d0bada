//! Stream compression for the nsqd TCP protocol (V2), as negotiated in IDENTIFY.
//!
//! Once a client IDENTIFYs with `snappy: true` or `deflate: true` (+ `deflate_level`), every byte
//! in both directions of the connection — starting with the `OK` response to that IDENTIFY — goes
//! through the compressor:
//!
//! * **Snappy** uses the Snappy *framing format*: a stream identifier chunk
//!   (`ff 06 00 00 "sNaPpY"`) followed by compressed (`0x00`) and uncompressed (`0x01`) chunks,
//!   each carrying a masked CRC-32C of its uncompressed data and at most 65536 uncompressed bytes.
//!   Padding (`0xfe`) and skippable (`0x80..=0xfd`) chunks are skipped; reserved unskippable types
//!   (`0x02..=0x7f`) are an error. This is what Go's `github.com/golang/snappy`
//!   `NewBufferedWriter`/`NewReader` and python-snappy's `StreamCompressor`/`StreamDecompressor`
//!   produce and consume.
//! * **Deflate** is a *raw* DEFLATE stream (no zlib header or trailer), as Go's `compress/flate`
//!   and zlib with `wbits=-15` speak it. The encoder ends every [`StreamEncoder::encode`] call with
//!   a sync flush, so the peer can decode everything sent so far without the stream ending.
//!
//! [`StreamDecoder`] handles the incoming direction (socket bytes → protocol bytes) and
//! [`StreamEncoder`] the outgoing one (protocol bytes → socket bytes). Both are plain state
//! machines with no I/O of their own; neither panics on any input.

mod deflate;
mod snappy;
#[cfg(test)]
mod tests;

use bytes::BytesMut;
use deflate::{DeflateDecoder, DeflateEncoder};
use snappy::{SnappyDecoder, SnappyEncoder};

/// Which compression a connection negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// The Snappy framing format.
    Snappy,
    /// Raw DEFLATE at `level` (NSQ's `deflate_level`, 1..=9; values above 9 are treated as 9).
    Deflate {
        /// Compression level of the outgoing direction; the incoming direction ignores it.
        level: u32,
    },
}

/// Why a compressed stream could not be decoded (or, rarely, encoded).
///
/// After a [`StreamDecoder`] has returned an error, the connection's stream is out of sync and
/// every later call returns [`CompressionError::Failed`]; the connection should be closed.
#[derive(Debug, thiserror::Error)]
pub enum CompressionError {
    /// A snappy chunk of a reserved, unskippable type (`0x02..=0x7f`).
    #[error("snappy: reserved unskippable chunk type {0:#04x}")]
    BadChunkType(u8),
    /// The snappy stream did not begin with the stream identifier chunk.
    #[error("snappy: stream does not start with the stream identifier chunk")]
    MissingStreamIdentifier,
    /// A snappy chunk's masked CRC-32C does not match its uncompressed data.
    #[error("snappy: checksum mismatch (chunk says {expected:#010x}, data gives {actual:#010x})")]
    BadChecksum {
        /// The masked checksum stored in the chunk.
        expected: u32,
        /// The masked checksum of the data as decoded.
        actual: u32,
    },
    /// Malformed snappy data (bad stream identifier, chunk too short, undecodable block).
    #[error("snappy: corrupt data: {0}")]
    Corrupt(String),
    /// A snappy chunk longer than the framing format allows.
    #[error("snappy: chunk too large: {len} bytes (at most {max})")]
    ChunkTooLarge {
        /// The length the chunk claims (or decodes to).
        len: usize,
        /// The largest length allowed for that chunk type.
        max: usize,
    },
    /// The DEFLATE stream was invalid (or, for the encoder, compression failed).
    #[error("deflate: {0}")]
    Deflate(String),
    /// Snappy compression of outgoing data failed (should not happen).
    #[error("snappy: encode failed: {0}")]
    Encode(String),
    /// An earlier call already failed; the stream cannot be resumed.
    #[error("compressed stream already failed")]
    Failed,
}

/// Incoming-direction decoder: raw socket bytes in, plain protocol bytes out.
pub struct StreamDecoder {
    inner: DecoderInner,
    failed: bool,
}

enum DecoderInner {
    Snappy(Box<SnappyDecoder>),
    Deflate(Box<DeflateDecoder>),
}

impl StreamDecoder {
    /// A decoder for a connection that negotiated `kind`, expecting the stream from its start.
    pub fn new(kind: &Compression) -> Self {
        let inner = match kind {
            Compression::Snappy => DecoderInner::Snappy(Box::new(SnappyDecoder::new())),
            Compression::Deflate { .. } => DecoderInner::Deflate(Box::new(DeflateDecoder::new())),
        };
        StreamDecoder {
            inner,
            failed: false,
        }
    }

    /// Feed raw bytes read from the socket; append every plain byte that can be decoded so far to `out`.
    ///
    /// Partial chunks are buffered internally. For snappy the buffer is bounded by the largest
    /// valid data chunk (a compressed block of 65536 bytes plus checksum and header, ~75 KiB):
    /// longer compressed/uncompressed chunks are rejected with
    /// [`CompressionError::ChunkTooLarge`] as soon as their header arrives, and skippable chunks
    /// (at most 16 MiB by their 3-byte length) are discarded as they stream past, never buffered.
    /// For deflate, output is bounded only by the compression ratio of the fed bytes, so callers
    /// should feed socket reads of bounded size.
    ///
    /// On error, bytes decoded before the bad chunk may already be in `out`, and the decoder is
    /// unusable from then on.
    pub fn decode(&mut self, raw: &[u8], out: &mut BytesMut) -> Result<(), CompressionError> {
        if self.failed {
            return Err(CompressionError::Failed);
        }
        let result = match &mut self.inner {
            DecoderInner::Snappy(d) => d.decode(raw, out),
            DecoderInner::Deflate(d) => d.decode(raw, out),
        };
        if result.is_err() {
            self.failed = true;
        }
        result
    }
}

/// Outgoing-direction encoder: plain bytes in, raw socket bytes out.
pub struct StreamEncoder {
    inner: EncoderInner,
    failed: bool,
}

enum EncoderInner {
    Snappy(Box<SnappyEncoder>),
    Deflate(Box<DeflateEncoder>),
}

impl StreamEncoder {
    /// An encoder for a connection that negotiated `kind`, starting a new stream.
    pub fn new(kind: &Compression) -> Self {
        let inner = match kind {
            Compression::Snappy => EncoderInner::Snappy(Box::new(SnappyEncoder::new())),
            Compression::Deflate { level } => {
                EncoderInner::Deflate(Box::new(DeflateEncoder::new(*level)))
            }
        };
        StreamEncoder {
            inner,
            failed: false,
        }
    }

    /// Compress `plain` and append the wire bytes to `out`, ending with whatever makes everything so far decodable by the peer (snappy: whole chunks, the stream identifier before the first one; deflate: a sync flush).
    ///
    /// Calling it with an empty `plain` appends nothing for snappy and an empty sync-flush block
    /// (at most a few bytes) for deflate.
    pub fn encode(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), CompressionError> {
        if self.failed {
            return Err(CompressionError::Failed);
        }
        let result = match &mut self.inner {
            EncoderInner::Snappy(e) => e.encode(plain, out),
            EncoderInner::Deflate(e) => e.encode(plain, out),
        };
        if result.is_err() {
            self.failed = true;
        }
        result
    }
}

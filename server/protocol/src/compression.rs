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

use bytes::BytesMut;
use flate2::{Compress, Decompress, FlushCompress, FlushDecompress, Status};

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

/// Most uncompressed bytes in one snappy frame chunk.
const MAX_BLOCK: usize = 65536;
/// Size of the masked CRC-32C that leads compressed and uncompressed chunks.
const CHECKSUM_LEN: usize = 4;
/// Size of a chunk header: a type byte and a 3-byte little-endian length.
const HEADER_LEN: usize = 4;
/// The stream identifier chunk's body.
const MAGIC_BODY: &[u8; 6] = b"sNaPpY";
/// The whole stream identifier chunk.
const STREAM_IDENTIFIER: &[u8; 10] = b"\xff\x06\x00\x00sNaPpY";

const CHUNK_COMPRESSED: u8 = 0x00;
const CHUNK_UNCOMPRESSED: u8 = 0x01;
const CHUNK_PADDING: u8 = 0xfe;
const CHUNK_STREAM_IDENTIFIER: u8 = 0xff;

/// The framing format's checksum: CRC-32C, rotated right by 15 and offset by a constant.
fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
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

// ---------------------------------------------------------------------------------------------
// Snappy framing format
// ---------------------------------------------------------------------------------------------

/// A chunk whose body is kept (as opposed to skipped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyKind {
    StreamIdentifier,
    Compressed,
    Uncompressed,
}

enum SnappyState {
    /// Collecting a chunk header; `filled` bytes of `hdr` are known.
    Header {
        hdr: [u8; HEADER_LEN],
        filled: usize,
    },
    /// Collecting a chunk body of `len` bytes into `SnappyDecoder::body`.
    Body { kind: BodyKind, len: usize },
    /// Discarding the rest of a padding/skippable chunk.
    Skip { remaining: usize },
}

struct SnappyDecoder {
    state: SnappyState,
    /// The partial chunk body, when a body spans `decode` calls.
    body: Vec<u8>,
    /// Whether the stream identifier chunk has been seen.
    seen_identifier: bool,
    raw: snap::raw::Decoder,
    /// Reused buffer for decompressed blocks.
    scratch: Vec<u8>,
}

impl SnappyDecoder {
    fn new() -> Self {
        SnappyDecoder {
            state: SnappyState::Header {
                hdr: [0; HEADER_LEN],
                filled: 0,
            },
            body: Vec::new(),
            seen_identifier: false,
            raw: snap::raw::Decoder::new(),
            scratch: Vec::new(),
        }
    }

    fn decode(&mut self, mut raw: &[u8], out: &mut BytesMut) -> Result<(), CompressionError> {
        loop {
            match &mut self.state {
                SnappyState::Skip { remaining } => {
                    let n = (*remaining).min(raw.len());
                    *remaining -= n;
                    raw = &raw[n..];
                    if *remaining > 0 {
                        return Ok(());
                    }
                    self.state = SnappyState::Header {
                        hdr: [0; HEADER_LEN],
                        filled: 0,
                    };
                }
                SnappyState::Header { hdr, filled } => {
                    if raw.is_empty() {
                        return Ok(());
                    }
                    let n = (HEADER_LEN - *filled).min(raw.len());
                    hdr[*filled..*filled + n].copy_from_slice(&raw[..n]);
                    *filled += n;
                    raw = &raw[n..];
                    if *filled < HEADER_LEN {
                        return Ok(());
                    }
                    let hdr = *hdr;
                    self.state = self.parse_header(hdr)?;
                }
                SnappyState::Body { kind, len } => {
                    let (kind, len) = (*kind, *len);
                    if self.body.is_empty() && raw.len() >= len {
                        // The whole body is at hand: decode it in place, without copying.
                        let (chunk, rest) = raw.split_at(len);
                        self.process_body(kind, chunk, out)?;
                        raw = rest;
                    } else {
                        let n = (len - self.body.len()).min(raw.len());
                        self.body.extend_from_slice(&raw[..n]);
                        raw = &raw[n..];
                        if self.body.len() < len {
                            return Ok(());
                        }
                        let body = std::mem::take(&mut self.body);
                        let result = self.process_body(kind, &body, out);
                        // Keep the allocation for the next spanning chunk.
                        self.body = body;
                        self.body.clear();
                        result?;
                    }
                    self.state = SnappyState::Header {
                        hdr: [0; HEADER_LEN],
                        filled: 0,
                    };
                }
            }
        }
    }

    /// Validate a chunk header and pick the state that reads its body.
    fn parse_header(&mut self, hdr: [u8; HEADER_LEN]) -> Result<SnappyState, CompressionError> {
        let chunk_type = hdr[0];
        let len = usize::from(hdr[1]) | usize::from(hdr[2]) << 8 | usize::from(hdr[3]) << 16;
        if !self.seen_identifier && chunk_type != CHUNK_STREAM_IDENTIFIER {
            return Err(CompressionError::MissingStreamIdentifier);
        }
        let body = |kind| Ok(SnappyState::Body { kind, len });
        match chunk_type {
            CHUNK_STREAM_IDENTIFIER => {
                if len != MAGIC_BODY.len() {
                    return Err(CompressionError::Corrupt(format!(
                        "stream identifier chunk of length {len}, want {}",
                        MAGIC_BODY.len()
                    )));
                }
                body(BodyKind::StreamIdentifier)
            }
            CHUNK_COMPRESSED => {
                let max = CHECKSUM_LEN + snap::raw::max_compress_len(MAX_BLOCK);
                check_data_chunk_len(len, max)?;
                body(BodyKind::Compressed)
            }
            CHUNK_UNCOMPRESSED => {
                check_data_chunk_len(len, CHECKSUM_LEN + MAX_BLOCK)?;
                body(BodyKind::Uncompressed)
            }
            0x02..=0x7f => Err(CompressionError::BadChunkType(chunk_type)),
            // Padding (0xfe) and skippable chunks (0x80..=0xfd).
            _ => {
                debug_assert!(chunk_type == CHUNK_PADDING || (0x80..=0xfd).contains(&chunk_type));
                Ok(SnappyState::Skip { remaining: len })
            }
        }
    }

    /// Handle one complete chunk body.
    fn process_body(
        &mut self,
        kind: BodyKind,
        chunk: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), CompressionError> {
        match kind {
            BodyKind::StreamIdentifier => {
                if chunk != MAGIC_BODY {
                    return Err(CompressionError::Corrupt(
                        "bad stream identifier body".to_string(),
                    ));
                }
                self.seen_identifier = true;
                Ok(())
            }
            BodyKind::Compressed => {
                let (expected, data) = split_checksum(chunk)?;
                let n = snap::raw::decompress_len(data)
                    .map_err(|e| CompressionError::Corrupt(e.to_string()))?;
                if n > MAX_BLOCK {
                    return Err(CompressionError::ChunkTooLarge {
                        len: n,
                        max: MAX_BLOCK,
                    });
                }
                self.scratch.resize(n, 0);
                let written = self
                    .raw
                    .decompress(data, &mut self.scratch[..n])
                    .map_err(|e| CompressionError::Corrupt(e.to_string()))?;
                let decoded = self.scratch.get(..written).ok_or_else(|| {
                    CompressionError::Corrupt("decompressed length mismatch".to_string())
                })?;
                verify_checksum(expected, decoded)?;
                out.extend_from_slice(decoded);
                Ok(())
            }
            BodyKind::Uncompressed => {
                let (expected, data) = split_checksum(chunk)?;
                verify_checksum(expected, data)?;
                out.extend_from_slice(data);
                Ok(())
            }
        }
    }
}

fn check_data_chunk_len(len: usize, max: usize) -> Result<(), CompressionError> {
    if len < CHECKSUM_LEN {
        return Err(CompressionError::Corrupt(format!(
            "data chunk of length {len} is shorter than its checksum"
        )));
    }
    if len > max {
        return Err(CompressionError::ChunkTooLarge { len, max });
    }
    Ok(())
}

fn split_checksum(chunk: &[u8]) -> Result<(u32, &[u8]), CompressionError> {
    match chunk.split_first_chunk::<CHECKSUM_LEN>() {
        Some((crc, data)) => Ok((u32::from_le_bytes(*crc), data)),
        None => Err(CompressionError::Corrupt(
            "data chunk shorter than its checksum".to_string(),
        )),
    }
}

fn verify_checksum(expected: u32, data: &[u8]) -> Result<(), CompressionError> {
    let actual = masked_crc(data);
    if actual != expected {
        return Err(CompressionError::BadChecksum { expected, actual });
    }
    Ok(())
}

struct SnappyEncoder {
    wrote_identifier: bool,
    raw: snap::raw::Encoder,
    scratch: Vec<u8>,
}

impl SnappyEncoder {
    fn new() -> Self {
        SnappyEncoder {
            wrote_identifier: false,
            raw: snap::raw::Encoder::new(),
            scratch: vec![0; snap::raw::max_compress_len(MAX_BLOCK)],
        }
    }

    fn encode(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), CompressionError> {
        if plain.is_empty() {
            return Ok(());
        }
        if !self.wrote_identifier {
            out.extend_from_slice(STREAM_IDENTIFIER);
            self.wrote_identifier = true;
        }
        for block in plain.chunks(MAX_BLOCK) {
            let crc = masked_crc(block);
            let n = self
                .raw
                .compress(block, &mut self.scratch)
                .map_err(|e| CompressionError::Encode(e.to_string()))?;
            let compressed = self.scratch.get(..n).ok_or_else(|| {
                CompressionError::Encode("compressed length out of range".to_string())
            })?;
            // Like Go's snappy writer: store the block as-is unless compression saves 12.5%.
            let (chunk_type, data) = if compressed.len() >= block.len() - block.len() / 8 {
                (CHUNK_UNCOMPRESSED, block)
            } else {
                (CHUNK_COMPRESSED, compressed)
            };
            let len = CHECKSUM_LEN + data.len();
            // `len` is at most 4 + max_compress_len(65536) < 2^24, so it fits 3 bytes.
            let len_bytes = (len as u32).to_le_bytes();
            out.reserve(HEADER_LEN + len);
            out.push(chunk_type);
            out.extend_from_slice(&len_bytes[..3]);
            out.extend_from_slice(&crc.to_le_bytes());
            out.extend_from_slice(data);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Raw DEFLATE
// ---------------------------------------------------------------------------------------------

/// Size of each step of decompressed output.
const INFLATE_STEP: usize = 32 * 1024;

struct DeflateDecoder {
    inflate: Decompress,
    /// Whether the final block has been decoded; nothing may follow it.
    ended: bool,
    scratch: Vec<u8>,
}

impl DeflateDecoder {
    fn new() -> Self {
        DeflateDecoder {
            inflate: Decompress::new(false),
            ended: false,
            scratch: vec![0; INFLATE_STEP],
        }
    }

    fn decode(&mut self, raw: &[u8], out: &mut BytesMut) -> Result<(), CompressionError> {
        let mut pos = 0;
        loop {
            if self.ended {
                if pos < raw.len() {
                    return Err(CompressionError::Deflate(
                        "data after the end of the deflate stream".to_string(),
                    ));
                }
                return Ok(());
            }
            let input = raw.get(pos..).unwrap_or_default();
            let in_before = self.inflate.total_in();
            let out_before = self.inflate.total_out();
            let status = self
                .inflate
                .decompress(input, &mut self.scratch, FlushDecompress::None)
                .map_err(|e| CompressionError::Deflate(e.to_string()))?;
            let consumed = usize::try_from(self.inflate.total_in() - in_before)
                .unwrap_or(usize::MAX)
                .min(input.len());
            let produced = usize::try_from(self.inflate.total_out() - out_before)
                .unwrap_or(usize::MAX)
                .min(self.scratch.len());
            out.extend_from_slice(&self.scratch[..produced]);
            pos += consumed;
            if status == Status::StreamEnd {
                self.ended = true;
                continue;
            }
            let output_full = produced == self.scratch.len();
            if output_full {
                // There may be more output pending inside the inflater.
                continue;
            }
            if pos >= raw.len() {
                // All input taken and the inflater drained.
                return Ok(());
            }
            if consumed == 0 && produced == 0 {
                // Input left and output room, yet no progress: never drop input silently.
                return Err(CompressionError::Deflate(
                    "inflater made no progress".to_string(),
                ));
            }
        }
    }
}

struct DeflateEncoder {
    deflate: Compress,
}

impl DeflateEncoder {
    fn new(level: u32) -> Self {
        DeflateEncoder {
            deflate: Compress::new(flate2::Compression::new(level.min(9)), false),
        }
    }

    fn encode(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), CompressionError> {
        let mut pos = 0;
        loop {
            let input = plain.get(pos..).unwrap_or_default();
            // Room for incompressible input (stored blocks cost 5 bytes per 64 KiB) and the flush.
            out.reserve(input.len() + input.len() / 1024 + 64);
            let in_before = self.deflate.total_in();
            let out_before = out.len();
            self.deflate
                .compress_vec(input, out, FlushCompress::Sync)
                .map_err(|e| CompressionError::Deflate(e.to_string()))?;
            let consumed = usize::try_from(self.deflate.total_in() - in_before)
                .unwrap_or(usize::MAX)
                .min(input.len());
            pos += consumed;
            // The flush is complete once all input is taken and the output was not filled up.
            if pos >= plain.len() && out.len() < out.capacity() {
                return Ok(());
            }
            if consumed == 0 && out.len() == out_before {
                return Err(CompressionError::Deflate(
                    "deflater made no progress".to_string(),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::{Read, Write};

    /// Deterministic test data: `mode` 0 = random bytes, 1 = repetitive text, 2 = zeros,
    /// 3 = a mix of random and repetitive runs.
    fn make_data(seed: u64, len: usize, mode: u8) -> Vec<u8> {
        let mut state = seed | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let text = b"PUB topic 12\nhello world, this is an NSQ message body. ";
        let mut data = Vec::with_capacity(len);
        while data.len() < len {
            match mode % 4 {
                0 => data.push(next() as u8),
                1 => data.push(text[data.len() % text.len()]),
                2 => data.push(0),
                _ => {
                    let run = (next() % 300) as usize;
                    let random = next() % 2 == 0;
                    for _ in 0..run {
                        if data.len() >= len {
                            break;
                        }
                        let b = if random {
                            next() as u8
                        } else {
                            text[data.len() % text.len()]
                        };
                        data.push(b);
                    }
                }
            }
        }
        data
    }

    /// Split `data` into consecutive pieces at the given fractional cut points.
    fn split_at_points<'a>(data: &'a [u8], cuts: &[u32]) -> Vec<&'a [u8]> {
        let mut points: Vec<usize> = cuts
            .iter()
            .map(|&c| (c as usize) % (data.len() + 1))
            .collect();
        points.sort_unstable();
        let mut pieces = Vec::new();
        let mut start = 0;
        for p in points {
            pieces.push(&data[start..p]);
            start = p;
        }
        pieces.push(&data[start..]);
        pieces
    }

    fn encode_pieces(kind: &Compression, pieces: &[&[u8]]) -> Vec<u8> {
        let mut enc = StreamEncoder::new(kind);
        let mut wire = Vec::new();
        for p in pieces {
            enc.encode(p, &mut wire).expect("encode");
        }
        wire
    }

    fn decode_pieces(kind: &Compression, pieces: &[&[u8]]) -> Result<Vec<u8>, CompressionError> {
        let mut dec = StreamDecoder::new(kind);
        let mut out = BytesMut::new();
        for p in pieces {
            dec.decode(p, &mut out)?;
        }
        Ok(out.to_vec())
    }

    fn decode_all(kind: &Compression, wire: &[u8]) -> Result<Vec<u8>, CompressionError> {
        decode_pieces(kind, &[wire])
    }

    fn kinds() -> Vec<Compression> {
        vec![
            Compression::Snappy,
            Compression::Deflate { level: 1 },
            Compression::Deflate { level: 6 },
            Compression::Deflate { level: 9 },
        ]
    }

    fn any_kind() -> impl Strategy<Value = Compression> {
        prop_oneof![
            Just(Compression::Snappy),
            (0u32..=12).prop_map(|level| Compression::Deflate { level }),
        ]
    }

    /// A snappy chunk with the given type and body.
    fn chunk(chunk_type: u8, body: &[u8]) -> Vec<u8> {
        let len = (body.len() as u32).to_le_bytes();
        let mut c = vec![chunk_type, len[0], len[1], len[2]];
        c.extend_from_slice(body);
        c
    }

    fn uncompressed_chunk(data: &[u8]) -> Vec<u8> {
        let mut body = masked_crc(data).to_le_bytes().to_vec();
        body.extend_from_slice(data);
        chunk(CHUNK_UNCOMPRESSED, &body)
    }

    /// Read everything a reader yields until it reports no more. A stream that is not finished
    /// (only sync-flushed) ends with `UnexpectedEof` once all its data has been read.
    fn read_available(mut r: impl Read) -> std::io::Result<Vec<u8>> {
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) => return Ok(got),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(got),
                Err(e) => return Err(e),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn round_trip_random_splits(
            kind in any_kind(),
            seed in any::<u64>(),
            len in prop_oneof![0usize..2000, 0usize..300_000],
            mode in 0u8..4,
            enc_cuts in prop::collection::vec(any::<u32>(), 0..8),
            dec_cuts in prop::collection::vec(any::<u32>(), 0..24),
        ) {
            let data = make_data(seed, len, mode);
            let wire = encode_pieces(&kind, &split_at_points(&data, &enc_cuts));
            let got = decode_pieces(&kind, &split_at_points(&wire, &dec_cuts)).expect("decode");
            prop_assert_eq!(got, data);
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            kind in any_kind(),
            raw in prop::collection::vec(any::<u8>(), 0..4096),
            cuts in prop::collection::vec(any::<u32>(), 0..8),
            with_identifier in any::<bool>(),
        ) {
            let mut input = Vec::new();
            if with_identifier && kind == Compression::Snappy {
                input.extend_from_slice(STREAM_IDENTIFIER);
            }
            input.extend_from_slice(&raw);
            let _ = decode_pieces(&kind, &split_at_points(&input, &cuts));
        }

        #[test]
        fn mutated_valid_stream_never_panics(
            kind in any_kind(),
            seed in any::<u64>(),
            len in 0usize..5000,
            mode in 0u8..4,
            flips in prop::collection::vec((any::<u32>(), any::<u8>()), 1..6),
            cuts in prop::collection::vec(any::<u32>(), 0..8),
        ) {
            let data = make_data(seed, len, mode);
            let mut wire = encode_pieces(&kind, &[&data]);
            if wire.is_empty() {
                return Ok(());
            }
            for (at, x) in flips {
                let i = at as usize % wire.len();
                wire[i] ^= x;
            }
            let _ = decode_pieces(&kind, &split_at_points(&wire, &cuts));
        }
    }

    #[test]
    fn snappy_output_decodes_with_reference_frame_decoder() {
        for mode in 0..4 {
            let data = make_data(7 + mode as u64, 200_000, mode);
            let wire = encode_pieces(
                &Compression::Snappy,
                &split_at_points(&data, &[1, 65536, 70000, 150_000]),
            );
            assert!(wire.starts_with(STREAM_IDENTIFIER));
            let mut got = Vec::new();
            snap::read::FrameDecoder::new(&wire[..])
                .read_to_end(&mut got)
                .expect("reference decoder");
            assert_eq!(got, data, "mode {mode}");
        }
    }

    #[test]
    fn snappy_reference_frame_encoder_output_decodes() {
        for mode in 0..4 {
            let data = make_data(11 + mode as u64, 300_000, mode);
            let mut w = snap::write::FrameEncoder::new(Vec::new());
            for piece in split_at_points(&data, &[100, 5000, 100_000]) {
                w.write_all(piece).expect("write");
                w.flush().expect("flush");
            }
            let wire = w.into_inner().expect("finish");
            for cuts in [
                vec![],
                vec![1, 2, 3, 4, 9, 10, 11],
                vec![70_000, 70_001, 123_456],
            ] {
                let got = decode_pieces(&Compression::Snappy, &split_at_points(&wire, &cuts))
                    .expect("decode");
                assert_eq!(got, data, "mode {mode}");
            }
            // Byte by byte too.
            let pieces: Vec<&[u8]> = wire.chunks(1).collect();
            assert_eq!(
                decode_pieces(&Compression::Snappy, &pieces).expect("decode"),
                data
            );
        }
    }

    #[test]
    fn snappy_encoder_chunk_layout() {
        let mut enc = StreamEncoder::new(&Compression::Snappy);
        let mut wire = Vec::new();
        enc.encode(&[], &mut wire).expect("encode");
        assert!(wire.is_empty(), "nothing to send for no data");
        enc.encode(b"OK", &mut wire).expect("encode");
        // Identifier, then one uncompressed chunk (2 bytes do not compress).
        let mut want = STREAM_IDENTIFIER.to_vec();
        want.extend_from_slice(&uncompressed_chunk(b"OK"));
        assert_eq!(wire, want);
        // The identifier is sent only once.
        let mut more = Vec::new();
        enc.encode(&[b'a'; 1000], &mut more).expect("encode");
        assert_eq!(more[0], CHUNK_COMPRESSED);
        // A block larger than 64 KiB is split into several chunks.
        let mut big = Vec::new();
        enc.encode(&make_data(3, 3 * MAX_BLOCK + 1, 0), &mut big)
            .expect("encode");
        let mut count = 0;
        let mut rest = &big[..];
        while !rest.is_empty() {
            assert_eq!(rest[0], CHUNK_UNCOMPRESSED);
            let len = usize::from(rest[1]) | usize::from(rest[2]) << 8 | usize::from(rest[3]) << 16;
            assert!(len <= CHECKSUM_LEN + MAX_BLOCK);
            rest = &rest[HEADER_LEN + len..];
            count += 1;
        }
        assert_eq!(count, 4);
    }

    #[test]
    fn snappy_skips_padding_and_skippable_chunks() {
        let mut wire = STREAM_IDENTIFIER.to_vec();
        wire.extend_from_slice(&chunk(CHUNK_PADDING, &[0; 100]));
        wire.extend_from_slice(&uncompressed_chunk(b"hello "));
        wire.extend_from_slice(&chunk(0x80, b"skip me"));
        wire.extend_from_slice(&chunk(0xfd, &[]));
        // A repeated stream identifier is allowed.
        wire.extend_from_slice(STREAM_IDENTIFIER);
        let mut w = snap::write::FrameEncoder::new(Vec::new());
        w.write_all(b"world").expect("write");
        let framed = w.into_inner().expect("finish");
        wire.extend_from_slice(&framed);
        for step in [1, 2, 3, 5, 7, wire.len()] {
            let pieces: Vec<&[u8]> = wire.chunks(step).collect();
            assert_eq!(
                decode_pieces(&Compression::Snappy, &pieces).expect("decode"),
                b"hello world"
            );
        }
    }

    #[test]
    fn snappy_large_skippable_chunk_is_not_buffered() {
        let mut dec = StreamDecoder::new(&Compression::Snappy);
        let mut out = BytesMut::new();
        dec.decode(STREAM_IDENTIFIER, &mut out).expect("identifier");
        // The largest possible skippable chunk: 16 MiB - 1 bytes.
        dec.decode(&[0x99, 0xff, 0xff, 0xff], &mut out)
            .expect("header");
        let filler = vec![0xaa; 1 << 20];
        for i in 0..16 {
            let n = if i == 15 {
                filler.len() - 1
            } else {
                filler.len()
            };
            dec.decode(&filler[..n], &mut out).expect("skip");
        }
        match &dec.inner {
            DecoderInner::Snappy(d) => assert!(d.body.capacity() == 0),
            DecoderInner::Deflate(_) => unreachable!(),
        }
        assert!(out.is_empty());
        dec.decode(&uncompressed_chunk(b"x"), &mut out)
            .expect("next chunk");
        assert_eq!(&out[..], b"x");
    }

    #[test]
    fn snappy_corrupt_inputs_are_errors() {
        let snappy = Compression::Snappy;
        let good = encode_pieces(&snappy, &[b"hello hello hello hello hello hello"]);

        // Flipped checksum byte.
        let mut bad = good.clone();
        bad[STREAM_IDENTIFIER.len() + HEADER_LEN] ^= 1;
        assert!(matches!(
            decode_all(&snappy, &bad),
            Err(CompressionError::BadChecksum { .. })
        ));

        // Flipped data byte of an uncompressed chunk.
        let mut wire = STREAM_IDENTIFIER.to_vec();
        wire.extend_from_slice(&uncompressed_chunk(b"abc"));
        let last = wire.len() - 1;
        wire[last] ^= 0x20;
        assert!(matches!(
            decode_all(&snappy, &wire),
            Err(CompressionError::BadChecksum { .. })
        ));

        // Reserved unskippable chunk types.
        for t in [0x02u8, 0x50, 0x7f] {
            let mut wire = STREAM_IDENTIFIER.to_vec();
            wire.extend_from_slice(&chunk(t, b"data"));
            assert!(matches!(
                decode_all(&snappy, &wire),
                Err(CompressionError::BadChunkType(x)) if x == t
            ));
        }

        // No stream identifier first.
        assert!(matches!(
            decode_all(&snappy, &uncompressed_chunk(b"abc")),
            Err(CompressionError::MissingStreamIdentifier)
        ));
        assert!(matches!(
            decode_all(&snappy, b"GET / HTTP/1.1\r\n"),
            Err(CompressionError::MissingStreamIdentifier)
        ));

        // Bad stream identifier body / length.
        assert!(matches!(
            decode_all(&snappy, b"\xff\x06\x00\x00sNaPpZ"),
            Err(CompressionError::Corrupt(_))
        ));
        assert!(matches!(
            decode_all(&snappy, b"\xff\x07\x00\x00sNaPpY!"),
            Err(CompressionError::Corrupt(_))
        ));

        // Data chunks too short for their checksum, or too long.
        for (t, len) in [(0x00u8, 3usize), (0x01, 0)] {
            let mut wire = STREAM_IDENTIFIER.to_vec();
            wire.extend_from_slice(&chunk(t, &vec![0; len]));
            assert!(matches!(
                decode_all(&snappy, &wire),
                Err(CompressionError::Corrupt(_))
            ));
        }
        for t in [0x00u8, 0x01] {
            // Only the header is sent: the length alone is rejected.
            let mut wire = STREAM_IDENTIFIER.to_vec();
            wire.extend_from_slice(&[t, 0xff, 0xff, 0xff]);
            assert!(matches!(
                decode_all(&snappy, &wire),
                Err(CompressionError::ChunkTooLarge { .. })
            ));
        }
        let mut wire = STREAM_IDENTIFIER.to_vec();
        wire.extend_from_slice(&uncompressed_chunk(&vec![1; MAX_BLOCK + 1]));
        assert!(matches!(
            decode_all(&snappy, &wire),
            Err(CompressionError::ChunkTooLarge { .. })
        ));

        // A compressed chunk that claims to decode to more than 64 KiB.
        let mut enc = snap::raw::Encoder::new();
        let big = enc
            .compress_vec(&vec![0; MAX_BLOCK + 10])
            .expect("compress");
        let mut body = masked_crc(&vec![0; MAX_BLOCK + 10]).to_le_bytes().to_vec();
        body.extend_from_slice(&big);
        let mut wire = STREAM_IDENTIFIER.to_vec();
        wire.extend_from_slice(&chunk(CHUNK_COMPRESSED, &body));
        assert!(matches!(
            decode_all(&snappy, &wire),
            Err(CompressionError::ChunkTooLarge { .. })
        ));

        // Garbage compressed block.
        let mut wire = STREAM_IDENTIFIER.to_vec();
        wire.extend_from_slice(&chunk(CHUNK_COMPRESSED, &[0, 0, 0, 0, 0x40, 0xff, 0xff]));
        assert!(matches!(
            decode_all(&snappy, &wire),
            Err(CompressionError::Corrupt(_))
        ));

        // Truncated stream: not an error, just nothing (or less) decoded yet.
        let truncated = &good[..good.len() - 3];
        assert_eq!(decode_all(&snappy, truncated).expect("partial"), b"");

        // After an error the decoder stays failed.
        let mut dec = StreamDecoder::new(&snappy);
        let mut out = BytesMut::new();
        assert!(dec.decode(b"garbage!", &mut out).is_err());
        assert!(matches!(
            dec.decode(&good, &mut out),
            Err(CompressionError::Failed)
        ));
    }

    #[test]
    fn deflate_output_decodes_after_every_encode_call() {
        for level in [0u32, 1, 6, 9] {
            let kind = Compression::Deflate { level };
            let mut enc = StreamEncoder::new(&kind);
            let mut wire = Vec::new();
            let mut sent = Vec::new();
            for (i, mode) in [1u8, 0, 3, 2, 1].iter().enumerate() {
                for len in [0usize, 1, 37, 5000, 100_000] {
                    let piece = make_data(i as u64 * 31 + len as u64, len, *mode);
                    enc.encode(&piece, &mut wire).expect("encode");
                    sent.extend_from_slice(&piece);
                    // A sync flush ends with the empty stored block marker.
                    assert!(wire.ends_with(&[0x00, 0x00, 0xff, 0xff]));
                    let got = read_available(flate2::read::DeflateDecoder::new(&wire[..]))
                        .expect("reference inflate");
                    assert_eq!(got.len(), sent.len(), "level {level}");
                    assert!(got == sent, "level {level}");
                }
            }
        }
    }

    #[test]
    fn deflate_reference_encoder_output_decodes() {
        for level in [1u32, 6, 9] {
            let kind = Compression::Deflate { level };
            let mut w =
                flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(level));
            let mut dec = StreamDecoder::new(&kind);
            let mut out = BytesMut::new();
            let mut sent = Vec::new();
            let mut fed = 0;
            for (i, len) in [5usize, 1000, 70_000, 0, 12].into_iter().enumerate() {
                let piece = make_data(i as u64 + 100, len, (i % 4) as u8);
                w.write_all(&piece).expect("write");
                w.flush().expect("flush");
                sent.extend_from_slice(&piece);
                let wire = w.get_ref();
                // Feed the new bytes in two halves.
                let new = &wire[fed..];
                let (a, b) = new.split_at(new.len() / 2);
                dec.decode(a, &mut out).expect("decode");
                dec.decode(b, &mut out).expect("decode");
                fed = wire.len();
                assert_eq!(&out[..], &sent[..], "level {level}");
            }
            // Finishing the stream is fine; anything after the end is an error.
            let wire = w.finish().expect("finish");
            dec.decode(&wire[fed..], &mut out).expect("decode end");
            assert_eq!(&out[..], &sent[..]);
            dec.decode(&[], &mut out)
                .expect("nothing after end is fine");
            assert!(matches!(
                dec.decode(b"x", &mut out),
                Err(CompressionError::Deflate(_))
            ));
        }
    }

    #[test]
    fn deflate_highly_compressible_input_expands_fully() {
        // ~8 MiB of zeros compresses to a few KiB; one decode call must yield all of it.
        let kind = Compression::Deflate { level: 9 };
        let data = vec![0u8; 8 << 20];
        let wire = encode_pieces(&kind, &[&data]);
        assert!(wire.len() < 64 * 1024);
        assert_eq!(decode_all(&kind, &wire).expect("decode").len(), data.len());
    }

    #[test]
    fn deflate_corrupt_inputs_are_errors() {
        let kind = Compression::Deflate { level: 6 };
        // Block type 3 is reserved.
        assert!(matches!(
            decode_all(&kind, &[0xff, 0xff, 0xff, 0xff]),
            Err(CompressionError::Deflate(_))
        ));
        // Stored block whose length and complement disagree.
        assert!(matches!(
            decode_all(&kind, &[0x00, 0x05, 0x00, 0x00, 0x00, b'a']),
            Err(CompressionError::Deflate(_))
        ));
        // A zlib-wrapped stream is not raw deflate (0x78 0x9c is a reserved-block header here).
        let mut zw = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        zw.write_all(b"hello").expect("write");
        let zlib = zw.finish().expect("finish");
        assert_ne!(decode_all(&kind, &zlib).ok(), Some(b"hello".to_vec()));
        // Truncated valid data is not an error.
        let wire = encode_pieces(&kind, &[b"hello hello hello hello"]);
        let _ = decode_all(&kind, &wire[..wire.len() / 2]).expect("partial");
    }

    #[test]
    fn all_kinds_round_trip_small_messages() {
        for kind in kinds() {
            let mut enc = StreamEncoder::new(&kind);
            let mut dec = StreamDecoder::new(&kind);
            let mut out = BytesMut::new();
            for msg in [
                &b"OK"[..],
                b"",
                b"\x00\x00\x00\x06\x00\x00\x00\x00OK",
                b"_heartbeat_",
            ] {
                let mut wire = Vec::new();
                enc.encode(msg, &mut wire).expect("encode");
                dec.decode(&wire, &mut out).expect("decode");
                assert_eq!(&out[..], msg, "{kind:?}");
                out.clear();
            }
        }
    }

    /// Cross-check raw deflate against CPython's zlib (wbits=-15), as pynsq uses it, when a
    /// `python3` is available.
    #[test]
    fn deflate_interoperates_with_python_zlib() {
        use std::process::{Command, Stdio};
        const SCRIPT: &str = r#"
import sys, zlib
mode = sys.argv[1]
data = sys.stdin.buffer.read()
if mode == "inflate":
    d = zlib.decompressobj(-15)
    sys.stdout.buffer.write(d.decompress(data))
else:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    half = len(data) // 2
    out = c.compress(data[:half]) + c.flush(zlib.Z_SYNC_FLUSH)
    out += c.compress(data[half:]) + c.flush(zlib.Z_SYNC_FLUSH)
    sys.stdout.buffer.write(out)
"#;
        let run = |mode: &str, input: &[u8]| -> Option<Vec<u8>> {
            let mut child = Command::new("python3")
                .args(["-c", SCRIPT, mode])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .ok()?;
            child.stdin.take()?.write_all(input).ok()?;
            let output = child.wait_with_output().ok()?;
            output.status.success().then_some(output.stdout)
        };
        let data = make_data(99, 150_000, 3);
        let kind = Compression::Deflate { level: 6 };
        let wire = encode_pieces(&kind, &split_at_points(&data, &[10, 80_000]));
        let Some(inflated) = run("inflate", &wire) else {
            eprintln!("python3 with zlib not available; skipping");
            return;
        };
        assert!(
            inflated == data,
            "python zlib inflated our stream differently"
        );
        let from_python = run("deflate", &data).expect("python deflate");
        assert!(decode_all(&kind, &from_python).expect("decode") == data);
    }
}

//! The Snappy framing format: a stream identifier chunk, then compressed and uncompressed
//! chunks with masked CRC-32C checksums (see the module above for the rules).

use super::CompressionError;
use bytes::BytesMut;

/// Most uncompressed bytes in one snappy frame chunk.
pub(super) const MAX_BLOCK: usize = 65536;
/// Size of the masked CRC-32C that leads compressed and uncompressed chunks.
pub(super) const CHECKSUM_LEN: usize = 4;
/// Size of a chunk header: a type byte and a 3-byte little-endian length.
pub(super) const HEADER_LEN: usize = 4;
/// The stream identifier chunk's body.
pub(super) const MAGIC_BODY: &[u8; 6] = b"sNaPpY";
/// The whole stream identifier chunk.
pub(super) const STREAM_IDENTIFIER: &[u8; 10] = b"\xff\x06\x00\x00sNaPpY";

pub(super) const CHUNK_COMPRESSED: u8 = 0x00;
pub(super) const CHUNK_UNCOMPRESSED: u8 = 0x01;
pub(super) const CHUNK_PADDING: u8 = 0xfe;
pub(super) const CHUNK_STREAM_IDENTIFIER: u8 = 0xff;

/// The framing format's checksum: CRC-32C, rotated right by 15 and offset by a constant.
pub(super) fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

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

pub(super) struct SnappyDecoder {
    state: SnappyState,
    /// The partial chunk body, when a body spans `decode` calls.
    pub(super) body: Vec<u8>,
    /// Whether the stream identifier chunk has been seen.
    seen_identifier: bool,
    raw: snap::raw::Decoder,
    /// Reused buffer for decompressed blocks.
    scratch: Vec<u8>,
}

impl SnappyDecoder {
    pub(super) fn new() -> Self {
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

    pub(super) fn decode(
        &mut self,
        mut raw: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), CompressionError> {
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

pub(super) struct SnappyEncoder {
    wrote_identifier: bool,
    raw: snap::raw::Encoder,
    scratch: Vec<u8>,
}

impl SnappyEncoder {
    pub(super) fn new() -> Self {
        SnappyEncoder {
            wrote_identifier: false,
            raw: snap::raw::Encoder::new(),
            scratch: vec![0; snap::raw::max_compress_len(MAX_BLOCK)],
        }
    }

    pub(super) fn encode(
        &mut self,
        plain: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CompressionError> {
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

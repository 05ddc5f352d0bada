//! Raw DEFLATE in both directions, each `encode` ending in a sync flush.

use super::CompressionError;
use bytes::BytesMut;
use flate2::{Compress, Decompress, FlushCompress, FlushDecompress, Status};

/// Size of each step of decompressed output.
const INFLATE_STEP: usize = 32 * 1024;

pub(super) struct DeflateDecoder {
    inflate: Decompress,
    /// Whether the final block has been decoded; nothing may follow it.
    ended: bool,
    scratch: Vec<u8>,
}

impl DeflateDecoder {
    pub(super) fn new() -> Self {
        DeflateDecoder {
            inflate: Decompress::new(false),
            ended: false,
            scratch: vec![0; INFLATE_STEP],
        }
    }

    pub(super) fn decode(
        &mut self,
        raw: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), CompressionError> {
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

pub(super) struct DeflateEncoder {
    deflate: Compress,
}

impl DeflateEncoder {
    pub(super) fn new(level: u32) -> Self {
        DeflateEncoder {
            deflate: Compress::new(flate2::Compression::new(level.min(9)), false),
        }
    }

    pub(super) fn encode(
        &mut self,
        plain: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CompressionError> {
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

//! Round trips, hostile input and interoperability (the snap crate, Go's and Python's
//! stream formats) of the stream codecs.

use super::snappy::*;
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
        let mut w = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(level));
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

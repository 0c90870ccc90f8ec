//! zstd on the blob wire: whether to ask for ranges compressed (the link), whether a range is
//! worth sending compressed (judged from a sample of it), its compression, and decompression
//! bounded by the size the range must have.
//!
//! - Wasm code shrinks to about 40% at zstd's fastest level, which compresses about 300 MB/s on
//!   one core here and decompresses three times as fast; random data and data compressed already
//!   do not shrink. Only a sample is compressed to tell them apart, so a range that will not
//!   shrink costs the server a small part of compressing it.
//! - Compressing pays only where the link is slower than the compressor. On the same host or a
//!   LAN it is not (loopback moves 650 MiB/s per stream here, and a compressed fetch of code
//!   took twice as long as a plain one: BENCHMARKS.md), so a client asks for compression only
//!   from a provider at least [`MIN_RTT`] away.

/// A provider at least this far (round trip) is on another network, where a link per flow is
/// slower than the compressor.
pub(crate) const MIN_RTT: std::time::Duration = std::time::Duration::from_millis(1);

/// Whether to ask a provider `rtt` away for compressed ranges.
pub(crate) fn worth_asking(rtt: std::time::Duration) -> bool {
    rtt >= MIN_RTT
}

/// zstd's fastest level: a link fast enough that level 1 cannot keep up gains nothing from a
/// higher one.
const LEVEL: i32 = 1;
/// Bytes from the middle of a range compressed to judge it (its start holds hashes, which never
/// compress).
const SAMPLE: usize = 16 << 10;
/// Ranges smaller than this go as they are.
const MIN_RANGE: usize = 16 << 10;
/// A range goes compressed when its sample, and then the whole, shrink to at most this share of
/// their size, in percent.
const WORTH_PERCENT: usize = 85;

/// The range `encoded` compressed into one zstd frame, if that makes it worth it.
pub(crate) fn compress_if_worth(encoded: &[u8]) -> Option<Vec<u8>> {
    if encoded.len() < MIN_RANGE {
        return None;
    }
    let sample_len = encoded.len().min(SAMPLE);
    let sample_start = (encoded.len() - sample_len) / 2;
    let sample = &encoded[sample_start..sample_start + sample_len];
    let shrinks = |original: usize, packed: usize| packed * 100 <= original * WORTH_PERCENT;
    let packed_sample = zstd::bulk::compress(sample, LEVEL).ok()?;
    if !shrinks(sample.len(), packed_sample.len()) {
        return None;
    }
    let packed = zstd::bulk::compress(encoded, LEVEL).ok()?;
    shrinks(encoded.len(), packed.len()).then_some(packed)
}

/// The largest frame that may carry `max_len` bytes (zstd's bound for incompressible input): a
/// client reads no more than this.
pub(crate) fn max_frame_len(max_len: usize) -> usize {
    zstd::zstd_safe::compress_bound(max_len)
}

/// The bytes in `frame`, refused if they would be more than `max_len` (a frame that claims or
/// inflates to more, as a decompression bomb does) or the frame is not valid zstd.
pub(crate) fn decompress(frame: &[u8], max_len: usize) -> std::io::Result<Vec<u8>> {
    zstd::bulk::decompress(frame, max_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes that look like code: short repeated phrases with some variation.
    fn code_like(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| b"local.get 0 i32.const 8 i32.add call 12\n"[i % 40] ^ ((i / 4096) as u8 & 1))
            .collect()
    }

    fn random(len: usize) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(len);
        let mut counter = 0u64;
        while bytes.len() < len {
            bytes.extend_from_slice(blake3::hash(&counter.to_le_bytes()).as_bytes());
            counter += 1;
        }
        bytes.truncate(len);
        bytes
    }

    #[test]
    fn code_goes_compressed_and_comes_back_whole() {
        let range = code_like(1 << 20);
        let frame = compress_if_worth(&range).expect("code compresses");
        assert!(frame.len() < range.len() / 4, "{} bytes", frame.len());
        assert_eq!(decompress(&frame, range.len()).unwrap(), range);
    }

    #[test]
    fn random_data_and_small_ranges_go_as_they_are() {
        assert_eq!(compress_if_worth(&random(1 << 20)), None);
        assert_eq!(compress_if_worth(&code_like(MIN_RANGE - 1)), None);
    }

    #[test]
    fn a_frame_that_inflates_past_the_range_is_refused() {
        let bomb = zstd::bulk::compress(&vec![0u8; 8 << 20], LEVEL).unwrap();
        assert!(bomb.len() < 4096);
        assert!(decompress(&bomb, 1 << 20).is_err());
        assert!(decompress(b"not zstd at all", 1 << 20).is_err());
        assert!(max_frame_len(1 << 20) >= 1 << 20);
    }
}

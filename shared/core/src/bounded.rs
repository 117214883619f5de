//! Reading untrusted bytes within limits: gzip inflated only so far (an absolute cap and a
//! ratio to the compressed bytes read), and no line longer than the line limit. Every
//! reader of a table, a profile or a backtest goes through [`open`], so a few megabytes
//! of gzip can never become gigabytes in memory.

use crate::limits::{self, Limit};
use std::io::{self, BufRead, BufReader, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What one read may inflate to and how long its lines may be.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// The limit on inflated bytes (its row of the limits table).
    pub inflated: &'static Limit,
    /// The longest line.
    pub line_bytes: u64,
}

impl Bounds {
    /// A request body.
    pub const REQUEST: Bounds = Bounds {
        inflated: &limits::INFLATED_BODY,
        line_bytes: limits::MAX_LINE_BYTES,
    };
    /// A stored dataset.
    pub const DATASET: Bounds = Bounds {
        inflated: &limits::INFLATED_DATASET,
        line_bytes: limits::MAX_LINE_BYTES,
    };
}

/// A limit a read went past.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail} (limit `{limit}`, see docs/limits.md)")]
pub struct Exceeded {
    /// The limit's name in the limits table.
    pub limit: &'static str,
    /// What went past it.
    pub detail: String,
}

impl Exceeded {
    /// The `Exceeded` an I/O error carries, if it carries one.
    pub fn in_io(e: &io::Error) -> Option<&Exceeded> {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<Exceeded>())
    }
}

/// Whether `bytes` start with gzip's magic number.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// A buffered reader of `reader`'s bytes, inflated when they are gzip, that fails with an
/// [`Exceeded`] (inside an `io::Error`) past `bounds`.
pub fn open<'a, R: Read + 'a>(reader: R, bounds: Bounds) -> Box<dyn BufRead + 'a> {
    let compressed = Arc::new(AtomicU64::new(0));
    // A small buffer on the compressed side: the ratio is checked against the bytes
    // read so far, and a buffer's worth may inflate before the first check.
    let mut counted = BufReader::with_capacity(
        8 << 10,
        Counted {
            inner: reader,
            count: Arc::clone(&compressed),
        },
    );
    let gzip = counted.fill_buf().map(is_gzip).unwrap_or(false);
    let inner: Box<dyn Read + 'a> = if gzip {
        Box::new(flate2::bufread::MultiGzDecoder::new(counted))
    } else {
        Box::new(counted)
    };
    Box::new(BufReader::with_capacity(
        1 << 16,
        Guarded {
            inner,
            bounds,
            compressed: gzip.then_some(compressed),
            out: 0,
            line: 0,
        },
    ))
}

/// Counts the bytes read from the source.
struct Counted<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Checks what comes out against the bounds.
struct Guarded<'a> {
    inner: Box<dyn Read + 'a>,
    bounds: Bounds,
    /// Compressed bytes read so far, when inflating.
    compressed: Option<Arc<AtomicU64>>,
    out: u64,
    /// Bytes since the last line feed.
    line: u64,
}

impl Read for Guarded<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out += n as u64;
        let fail = |e: Exceeded| Err(io::Error::new(io::ErrorKind::InvalidData, e));
        if let Some(compressed) = &self.compressed {
            let inflated = self.bounds.inflated;
            if self.out > inflated.value {
                return fail(Exceeded {
                    limit: inflated.name,
                    detail: format!("the gzip data inflates past {}", inflated.shown()),
                });
            }
            let read = compressed.load(Ordering::Relaxed).max(1);
            if self.out > limits::INFLATE_RATIO_FROM_BYTES
                && self.out > read.saturating_mul(limits::MAX_INFLATE_RATIO)
            {
                return fail(Exceeded {
                    limit: limits::INFLATE_RATIO.name,
                    detail: format!(
                        "{read} bytes of gzip inflated to {} bytes, more than {}× ({})",
                        self.out,
                        limits::MAX_INFLATE_RATIO,
                        "a decompression bomb, or data no table has"
                    ),
                });
            }
        }
        for &b in &buf[..n] {
            if b == b'\n' {
                self.line = 0;
            } else {
                self.line += 1;
                if self.line > self.bounds.line_bytes {
                    return fail(Exceeded {
                        limit: limits::LINE.name,
                        detail: format!("a line is longer than {}", limits::LINE.shown()),
                    });
                }
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    /// Pseudo-random digits: they compress about 2×, like real numbers.
    fn digits(n: usize) -> Vec<u8> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b'0' + (x % 10) as u8
            })
            .collect()
    }

    fn drain(mut r: Box<dyn BufRead + '_>) -> Result<u64, Exceeded> {
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0;
        loop {
            match r.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => total += n as u64,
                Err(e) => return Err(Exceeded::in_io(&e).expect("a limit").clone()),
            }
        }
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_ratio_long_before_the_cap() {
        // 64 MiB of one repeated row: about 65 KB of gzip.
        let bomb = gzip(&b"0,0,0\n".repeat((64 << 20) / 6));
        let e = drain(open(&bomb[..], Bounds::DATASET)).unwrap_err();
        assert_eq!(e.limit, limits::INFLATE_RATIO.name, "{e}");
    }

    #[test]
    fn the_absolute_cap_holds_for_data_that_compresses_like_tables() {
        // Random digits compress about 2.3×: under the ratio, so the cap must stop it.
        let mut x = 7u64;
        let mut text = Vec::new();
        while text.len() < (MAX_TEST_BYTES as usize) + (1 << 20) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            text.extend_from_slice(format!("{},{}\n", x % 1000, (x >> 20) % 1000).as_bytes());
        }
        let small = Bounds {
            inflated: &TEST_CAP,
            line_bytes: limits::MAX_LINE_BYTES,
        };
        let gz = gzip(&text);
        let e = drain(open(&gz[..], small)).unwrap_err();
        assert_eq!(e.limit, "test cap");
        // Plain bytes are not inflated: the cap is for gzip (plain bodies have their own).
        assert_eq!(drain(open(&text[..], small)).unwrap(), text.len() as u64);
    }

    const MAX_TEST_BYTES: u64 = 4 << 20;
    static TEST_CAP: Limit = Limit {
        name: "test cap",
        value: MAX_TEST_BYTES,
        unit: limits::Unit::Bytes,
        variable: None,
        answer: "",
    };

    #[test]
    fn long_lines_stop_at_the_line_limit_plain_or_inflated() {
        // Digits that do not repeat, so the gzip copy is no bomb.
        let long: Vec<u8> = digits(limits::MAX_LINE_BYTES as usize + 1);
        for input in [long.clone(), gzip(&long)] {
            let e = drain(open(&input[..], Bounds::REQUEST)).unwrap_err();
            assert_eq!(e.limit, limits::LINE.name);
        }
        let mut fine = digits(limits::MAX_LINE_BYTES as usize);
        fine.push(b'\n');
        fine.extend_from_slice(&fine.clone());
        assert_eq!(
            drain(open(&fine[..], Bounds::REQUEST)).unwrap(),
            fine.len() as u64
        );
    }

    #[test]
    fn ordinary_gzip_reads_whole() {
        let text: String = (0..50_000)
            .map(|i| format!("{i},{}\n", i * 7 % 13))
            .collect();
        let gz = gzip(text.as_bytes());
        assert_eq!(
            drain(open(&gz[..], Bounds::REQUEST)).unwrap(),
            text.len() as u64
        );
    }
}

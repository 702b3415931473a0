//! Inputs for the suites: the sample images, small sample sets, PNG chunks with their CRC,
//! decompression-bomb headers, and throwaway directories.
//!
//! Trust boundary: none; these bytes are what a hostile or an ordinary client would upload.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The repository's `samples/` directory.
pub fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples")
}

/// The bytes of one sample image.
pub fn sample(name: &str) -> Vec<u8> {
    let p = samples().join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The small samples: jobs on them take a millisecond or two.
pub const SMALL_SAMPLES: [&str; 2] = ["chelsea_64x64.png", "astronaut_128x128.jpg"];

static DIRS: AtomicU64 = AtomicU64::new(0);

/// A fresh directory under the system temp dir, removed on drop unless the test is failing
/// (then it is kept, and its path printed, for a look at the logs).
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!(
            "imgtest-{}-{tag}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        TempDir(d)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {} for inspection", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A directory holding copies of the small samples (fast jobs for load runs).
pub fn small_images(tag: &str) -> TempDir {
    let d = TempDir::new(tag);
    for f in SMALL_SAMPLES {
        std::fs::copy(samples().join(f), d.join(f)).unwrap();
    }
    d
}

/// A batch for a client's filter command, in `dir` (created): four copies each of four
/// samples, PNG and JPEG, under distinct names; returns how many files it holds.
pub fn batch_inputs(dir: &Path) -> usize {
    std::fs::create_dir_all(dir).unwrap();
    let mut n = 0;
    for i in 0..4 {
        for f in ["cat.png", "camera.png", "rocket.jpg", "retina.jpg"] {
            std::fs::copy(samples().join(f), dir.join(format!("{i}-{f}"))).unwrap();
            n += 1;
        }
    }
    n
}

/// How many entries directory `dir` holds (0 while it does not exist).
pub fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

/// CRC-32 (IEEE), as PNG chunks use it.
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// Appends one PNG chunk (length, type, data, CRC).
pub fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
}

/// A PNG whose header declares `w` x `h` pixels of `color_type` (2 RGB, 6 RGBA) at 8 bits,
/// followed by a token IDAT: what a decompression-bomb upload looks like to the server.
pub fn png_bomb(w: u32, h: u32, color_type: u8) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, color_type, 0, 0, 0]);
    png_chunk(&mut png, b"IHDR", &ihdr);
    // An empty zlib stream.
    png_chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    png_chunk(&mut png, b"IEND", &[]);
    png
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        // The standard check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn png_iend_chunk_matches_every_png() {
        let mut c = Vec::new();
        png_chunk(&mut c, b"IEND", &[]);
        assert_eq!(c, b"\0\0\0\0IEND\xae\x42\x60\x82");
    }

    #[test]
    fn a_png_bomb_declares_its_size_and_is_tiny() {
        let b = png_bomb(100_000, 70_000, 2);
        assert!(b.len() < 100);
        assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&b[12..16], b"IHDR");
        assert_eq!(u32::from_be_bytes(b[16..20].try_into().unwrap()), 100_000);
        assert_eq!(u32::from_be_bytes(b[20..24].try_into().unwrap()), 70_000);
        assert_eq!(b[25], 2, "colour type");
        let real = sample("chelsea_64x64.png");
        assert_eq!(&b[b.len() - 12..], &real[real.len() - 12..], "same IEND");
    }

    #[test]
    fn temp_dirs_are_distinct_and_removed() {
        let (a, b) = (TempDir::new("t"), TempDir::new("t"));
        assert_ne!(a.path(), b.path());
        let p = a.path().to_path_buf();
        std::fs::write(a.join("f"), b"x").unwrap();
        drop(a);
        assert!(!p.exists());
        let imgs = small_images("s");
        for f in SMALL_SAMPLES {
            assert!(imgs.join(f).is_file());
        }
    }
}

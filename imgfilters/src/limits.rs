//! Resource limits applied to one request.
//!
//! Trust boundary: these numbers are what stands between hostile image bytes / op specs and the
//! worker's memory and CPU. The defaults are meant for a worker process that handles one image
//! at a time; a server may tighten them, but should not loosen them without also raising the
//! worker's memory rlimit.

/// Upper bounds for a single [`crate::run`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest `width * height` accepted, both for the decoded input (checked from the header,
    /// before any pixel is decoded) and for every intermediate/output image an op produces.
    pub max_pixels: u64,
    /// Longest input accepted, in bytes.
    pub max_input_bytes: u64,
    /// Passed to `image::Limits::max_alloc`: bytes the decoder may allocate, including the
    /// decoded pixel buffer.
    pub max_alloc: u64,
    /// Most filter ops in one pipeline (the trailing `format:` step is not counted).
    pub max_ops: usize,
}

/// Default [`Limits::max_pixels`]: 50 megapixels.
pub const DEFAULT_MAX_PIXELS: u64 = 50_000_000;
/// Default [`Limits::max_input_bytes`]: 64 MiB.
pub const DEFAULT_MAX_INPUT_BYTES: u64 = 64 * 1024 * 1024;
/// Default [`Limits::max_alloc`]: 512 MiB, enough for a 50-megapixel RGBA16 buffer (400 MB).
pub const DEFAULT_MAX_ALLOC: u64 = 512 * 1024 * 1024;
/// Default [`Limits::max_ops`].
pub const DEFAULT_MAX_OPS: usize = 16;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pixels: DEFAULT_MAX_PIXELS,
            max_input_bytes: DEFAULT_MAX_INPUT_BYTES,
            max_alloc: DEFAULT_MAX_ALLOC,
            max_ops: DEFAULT_MAX_OPS,
        }
    }
}

impl Limits {
    /// Whether an image of `width x height` is within [`Limits::max_pixels`].
    pub fn check_pixels(&self, width: u64, height: u64) -> Result<(), crate::FilterError> {
        if width.saturating_mul(height) > self.max_pixels {
            return Err(crate::FilterError::TooManyPixels {
                width: saturate(width),
                height: saturate(height),
                limit: self.max_pixels,
            });
        }
        Ok(())
    }

    /// The `image` crate's view of these limits.
    pub(crate) fn to_image_limits(&self) -> image::Limits {
        // A single side longer than max_pixels cannot be part of an acceptable image, so this is
        // the tightest strict per-side bound that never refuses an image check_pixels accepts.
        let side = saturate(self.max_pixels);
        let mut l = image::Limits::default();
        l.max_image_width = Some(side);
        l.max_image_height = Some(side);
        l.max_alloc = Some(self.max_alloc);
        l
    }
}

fn saturate(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

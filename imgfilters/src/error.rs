//! Error types of the crate.
//!
//! Trust boundary: everything here describes a refusal of untrusted input (op-spec text or image
//! bytes from the network). Messages may be sent back to the client, so they name what was wrong
//! with the request but never include more than a short excerpt of the input itself.

use thiserror::Error;

/// Everything that can go wrong while parsing, decoding, filtering or encoding.
///
/// Every failure on hostile input is one of these; nothing in the crate panics on bad input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FilterError {
    /// The op-spec text (or a programmatically built [`crate::Pipeline`]) is invalid.
    /// `step` is the 1-based index of the offending comma-separated step, `None` when the
    /// problem concerns the whole spec (length, step count).
    #[error("bad op spec{}: {reason}", step_suffix(*.step))]
    BadSpec {
        step: Option<usize>,
        reason: SpecError,
    },
    /// The input is longer than [`crate::Limits::max_input_bytes`].
    #[error("input is {len} bytes, more than the limit of {limit}")]
    InputTooLarge { len: u64, limit: u64 },
    /// The bytes are not an image in one of the supported formats.
    #[error("unsupported image format: {0}")]
    UnsupportedFormat(String),
    /// An image (declared by the input header, or produced by an op) would have more pixels
    /// than [`crate::Limits::max_pixels`]. Dimensions that do not fit in `u32` saturate.
    #[error("image of {width}x{height} pixels exceeds the limit of {limit} pixels")]
    TooManyPixels { width: u32, height: u32, limit: u64 },
    /// The decoder refused to allocate more than [`crate::Limits::max_alloc`].
    #[error("decoder limit exceeded: {0}")]
    LimitExceeded(String),
    /// The image data is malformed; the decoder's message is kept.
    #[error("cannot decode image: {0}")]
    Decode(String),
    /// A crop rectangle does not lie inside the image.
    #[error(
        "crop {width}x{height} at ({x},{y}) does not fit inside the {image_width}x{image_height} image"
    )]
    BadGeometry {
        x: u32,
        y: u32,
        width: u32,
        height: u32,
        image_width: u32,
        image_height: u32,
    },
    /// The encoder refused the image (e.g. larger than the output format allows).
    #[error("cannot encode image: {0}")]
    Encode(String),
}

impl FilterError {
    /// A short stable name of the variant, for logs, metrics and protocol status codes;
    /// unlike the `Display` text it never changes with the details.
    pub fn kind(&self) -> &'static str {
        match self {
            FilterError::BadSpec { .. } => "bad_spec",
            FilterError::InputTooLarge { .. } => "input_too_large",
            FilterError::UnsupportedFormat(_) => "unsupported_format",
            FilterError::TooManyPixels { .. } => "too_many_pixels",
            FilterError::LimitExceeded(_) => "limit_exceeded",
            FilterError::Decode(_) => "decode",
            FilterError::BadGeometry { .. } => "bad_geometry",
            FilterError::Encode(_) => "encode",
        }
    }

    pub(crate) fn spec(step: Option<usize>, reason: SpecError) -> Self {
        FilterError::BadSpec { step, reason }
    }
}

fn step_suffix(step: Option<usize>) -> String {
    match step {
        Some(n) => format!(" (step {n})"),
        None => String::new(),
    }
}

/// Why an op spec was refused; carried by [`FilterError::BadSpec`].
///
/// `op` fields name the op whose arguments were wrong; `text` fields carry the offending piece
/// of the spec, which is at most the 1024-byte spec itself.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpecError {
    #[error("spec is {len} bytes, longer than the limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("spec has {count} ops, more than the limit of {max}")]
    TooManyOps { count: usize, max: usize },
    #[error("empty step")]
    EmptyStep,
    #[error("unknown op {0:?}")]
    UnknownOp(String),
    #[error("{op}: expected {expected}")]
    WrongArgs {
        op: &'static str,
        expected: &'static str,
    },
    #[error("{op}: {what} {text:?} is not a valid number")]
    BadNumber {
        op: &'static str,
        what: &'static str,
        text: String,
    },
    #[error("{op}: {what} must be a finite number")]
    NotFinite {
        op: &'static str,
        what: &'static str,
    },
    #[error("{op}: {what} = {value} is outside {range}")]
    OutOfRange {
        op: &'static str,
        what: &'static str,
        value: String,
        range: &'static str,
    },
    #[error("{op}: unknown {what} {text:?}")]
    UnknownKeyword {
        op: &'static str,
        what: &'static str,
        text: String,
    },
    #[error("format must be the last step and appear once")]
    FormatNotLast,
}

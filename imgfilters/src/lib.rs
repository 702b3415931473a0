//! `imgfilters`: the image-processing core of imgserver — op-spec parsing, bounded decoding,
//! filter kernels and encoding, shared by the server's filter workers and the client's
//! `--local` mode.
//!
//! Trust boundary: "hostile image bytes and op specs from the network". Every input may be
//! malicious, so every failure is a typed [`FilterError`], never a panic; sizes are checked
//! against [`Limits`] before anything proportional to them is allocated. The crate does no I/O
//! besides reading the bytes it is given, starts no threads and contains no `unsafe` (its SIMD
//! dependencies use it internally; libjpeg-turbo is C and decodes the hostile JPEG bytes, from
//! memory, into a buffer this crate sized from the already checked header).
//!
//! # Use
//!
//! ```
//! # fn main() -> Result<(), imgfilters::FilterError> {
//! # let mut input = Vec::new();
//! # use imgfilters::image::{DynamicImage, ImageFormat};
//! # DynamicImage::new_rgb8(64, 48)
//! #     .write_to(&mut std::io::Cursor::new(&mut input), ImageFormat::Png).unwrap();
//! let pipeline: imgfilters::Pipeline = "resize:32x32:fill,grayscale,format:jpeg:80".parse()?;
//! let out = imgfilters::run(&input, &pipeline, &imgfilters::Limits::default())?;
//! assert_eq!((out.format, out.width, out.height), (ImageFormat::Jpeg, 32, 32));
//! # Ok(()) }
//! ```
//!
//! A filter worker splits a job in two: [`prepare`] decodes and filters (the result holds no
//! borrow of the input), then [`Prepared::encode`] writes into a [`Sink`], a fixed region (the
//! ring slot the input came from) that spills into a `Vec` only when the output outgrows it.
//! [`run_into`] is the same with an empty region, writing into the caller's `Vec`.
//!
//! # Op-spec text (wire protocol)
//!
//! The definition is section 12 of docs/PROTOCOL.md; this is its grammar (ABNF, every quoted
//! string case-sensitive), which the parser enforces exactly:
//!
//! ```text
//! spec       = *WSP / step *( "," step )     ; blank: the empty pipeline; <= 1024 bytes
//! step       = *WSP ( op / format ) *WSP     ; a format step only as the last step
//! WSP        = %x20 / %x09                   ; space or tab, nothing else
//! op         = "blur:" SIGMA
//!            / "sharpen:" SIGMA [ ":" THRESHOLD ]
//!            / "resize:" SIZE [ ":" MODE [ ":" FILTER ] / ":" FILTER [ ":" MODE ] ]
//!            / "scale:" PERCENT [ ":" FILTER ]
//!            / "thumbnail:" DIM
//!            / "crop:" COORD ":" COORD ":" DIM "x" DIM
//!            / "rotate:" ( "90" / "180" / "270" )   ; clockwise
//!            / "flip:" ( "h" / "v" )                ; h mirrors left-right, v top-bottom
//!            / "grayscale" / "invert" / "noop"
//!            / "brightness:" BRIGHTNESS
//!            / "contrast:" CONTRAST
//! format     = "format:" ( "png" / "gif" / "bmp" / "tiff" / "tif" / "same"
//!                        / ( "jpeg" / "jpg" ) [ ":" QUALITY ]
//!                        / "webp" [ ":" ( QUALITY / "lossless" ) ]  ; no QUALITY: lossless
//!                        / "avif" [ ":" QUALITY ] )
//! SIZE       = DIM "x" DIM / DIM "x" / "x" DIM     ; a missing side keeps the aspect ratio
//! MODE       = "fit" / "fill" / "exact"            ; default fit; fill/exact need both sides
//! FILTER     = "nearest" / "triangle" / "catmullrom" / "gaussian" / "lanczos3"
//! UINT       = 1*DIGIT                 SINT = [ "-" ] UINT
//! UDEC       = UINT [ "." 1*DIGIT ]    SDEC = [ "-" ] UDEC          DIGIT = %x30-39
//! SIGMA      = UDEC  0 < v <= 100      THRESHOLD = UINT 0..=65535 (default 0)
//! DIM        = UINT  1..=65535         COORD     = UINT 0..=65535
//! PERCENT    = UINT  1..=1000          QUALITY   = UINT 1..=100 (default jpeg 85, avif 60)
//! BRIGHTNESS = SINT  -255..=255        CONTRAST  = SDEC -100..=100 (percent)
//! ```
//!
//! - White space is ASCII space and tab around a step only: any other character (vertical
//!   tab, CR, LF, U+0085, U+2028, U+00A0, ...) is part of the step and fails it.
//! - Numbers are plain decimals: no exponent, no `+`, no leading or trailing `.`, no `inf` or
//!   `NaN`; a `-` only for brightness and contrast. A decimal is rounded to the nearest `f32`
//!   and the range is checked on that value; one that rounds to infinity is refused.
//! - At most [`Limits::max_ops`] (default 16) ops; the `format` step does not count.
//! - `fit` keeps the aspect ratio inside the box; `fill` covers the box and centre-crops;
//!   `exact` stretches. `scale:P` is an exact resize to P% of each side (rounded down, at
//!   least 1 pixel). `thumbnail:N` fits inside NxN with a fast integer filter and never
//!   enlarges. `crop` must lie entirely inside the image. Every op's output must stay within
//!   [`Limits::max_pixels`].
//! - Without a `format` step the output has the input's format. The empty spec (and `noop`)
//!   just decodes and re-encodes.
//! - `Pipeline`'s `Display` prints the canonical form (defaults omitted, `format:same`
//!   omitted, `jpeg` and `avif` quality always written, `webp:lossless` as `webp`), and parsing it gives back an equal `Pipeline`.
//! - Any violation is [`FilterError::BadSpec`] with the 1-based step number and a
//!   [`SpecError`] saying what is wrong.
//!
//! Examples: `blur:2`, `resize:800x600:fill:lanczos3`, `resize:800x`, `scale:50`, `thumbnail:128`,
//! `crop:10:20:300x200`, `rotate:90`, `flip:h`, `brightness:-20`, `contrast:15`,
//! `sharpen:1.0:5`, `grayscale,format:webp`, `noop,format:jpeg:85`.
//!
//! # Decoding and encoding
//!
//! - Formats: PNG, JPEG, GIF, WebP, BMP, TIFF, sniffed from the bytes (never a file name).
//!   AVIF is an output format only (no AV1 decoder is built in): an AVIF input is
//!   [`FilterError::UnsupportedFormat`].
//! - Encoders: the `image` crate's for PNG, GIF, lossless WebP, BMP and TIFF; libjpeg-turbo
//!   for JPEG; libwebp (vendored by libwebp-sys, static) for lossy WebP; rav1e through ravif
//!   for AVIF (speed 6, 4:4:4, 10-bit, single-threaded). None of them starts a thread.
//! - Decoders: JPEG with libjpeg-turbo 3 (the `turbojpeg` feature, on by default; vendored and
//!   linked statically), the others with the `image` crate's Rust decoders (which also take
//!   JPEG without the feature, or when libjpeg-turbo only warns about the header).
//! - The header is read first; `width * height > max_pixels` is refused with
//!   [`FilterError::TooManyPixels`] before any pixel buffer is allocated, as is any op chain
//!   whose geometry would fail, then the pixel buffer against `max_alloc`. `image::Limits`
//!   (`max_alloc`, per-side caps) bound the `image` decoders.
//! - Damaged JPEGs that libjpeg-turbo recovers (corrupt entropy-coded data, truncation) decode
//!   to what it recovers, with [`Output::decode_warning`] set; a fatal error is
//!   [`FilterError::Decode`]. Grey stays L8, CMYK/YCCK become RGB8 (as the `image` decoder
//!   converts them), arithmetic and lossless JPEGs decode. Clean JPEGs decode within IDCT
//!   rounding of the `image` crate's zune-jpeg (PSNR >= 40 dB, tests/jpeg_decode.rs).
//! - Shrink-on-load ([`RunOptions::shrink_on_load`], on by default): when the first op is a
//!   resampling downscale (resize, scale; not `nearest`, not `thumbnail`), a JPEG is decoded at
//!   1/2, 1/4 or 1/8 by DCT scaling (the largest factor still covering the target, EXIF
//!   rotation included) and the op resamples to the size computed from the full image, so
//!   output dimensions are the same either way ([`Output::shrink`] says which factor was
//!   used; PSNR >= 35 dB against full decode + resize).
//! - Animated GIF/WebP: only the first frame is decoded and output.
//! - EXIF orientation is applied after decoding, so the output is upright.
//! - Output carries no metadata: the encoders are never handed EXIF, ICC or text chunks, so
//!   they are stripped (tested for PNG and JPEG).
//! - Colour types are converted as the output format needs: JPEG drops alpha (RGB8/L8), GIF,
//!   WebP and BMP are 8-bit (lossy WebP and AVIF: RGB8/RGBA8, grey becomes RGB); PNG and TIFF keep 16-bit samples. Float TIFF input
//!   is converted to 16-bit right after decoding.
//! - Output is deterministic: same input, spec and build, same bytes, on a given machine.
//!
//! # Kernels
//!
//! The hot paths do not use the `image` crate's own (scalar, f32) implementations, but are
//! set up to reproduce them (PSNR >= 40 dB against `image` on photos, tests/fidelity.rs;
//! speed in examples/kernels.rs):
//!
//! - blur and sharpen, 8-bit: `libblur` fixed-point SIMD convolution with `image`'s kernel
//!   (16-bit: `image`);
//! - resize (fit, fill, exact), 8- and 16-bit: `fast_image_resize` with `image`'s filters and
//!   no alpha premultiplication; nearest and thumbnail: exact re-implementations of `image`'s;
//! - grayscale: `image`'s integer formula in one pass;
//! - JPEG output: libjpeg-turbo 3 (vendored, static; the `turbojpeg` feature, on by default),
//!   else the pure-Rust `jpeg-encoder`; both 4:4:4 with the accurate DCT like `image`'s;
//! - JPEG input: libjpeg-turbo 3's decoder (same feature), see "Decoding and encoding".
//!
//! These libraries choose their SIMD code (SSE4.1, AVX2, ...) at run time from the CPU, so
//! the server's workers and the client's `--local` mode, on the same machine and build, give
//! identical bytes; on a machine with a different instruction set the bytes may differ by
//! rounding (invisibly: the same fidelity bounds hold). All versions are pinned by Cargo.lock.

#![forbid(unsafe_code)]

mod decode;
mod encode_web;
mod error;
pub mod filters;
mod format;
#[cfg(feature = "turbojpeg")]
mod jpeg;
mod limits;
mod ops;
mod orient;
mod pipeline;
mod shrink;
mod sink;
mod variants;

#[cfg(test)]
mod testutil;

pub use decode::{probe, ImageInfo};
pub use error::{FilterError, SpecError};
pub use filters::{apply, apply_with_limits, output_dimensions};
pub use format::{from_wire_code, wire_code, OUTPUT_FORMATS, SUPPORTED_FORMATS};
pub use limits::{
    Limits, DEFAULT_MAX_ALLOC, DEFAULT_MAX_INPUT_BYTES, DEFAULT_MAX_OPS, DEFAULT_MAX_PIXELS,
};
pub use ops::{
    FlipAxis, Op, OutputFormat, Pipeline, ResizeFilter, ResizeMode, Rotation, DEFAULT_AVIF_QUALITY,
    DEFAULT_JPEG_QUALITY, MAX_DIMENSION, MAX_SIGMA, MAX_SPEC_LEN,
};
pub use pipeline::{
    prepare, prepare_with, run, run_into, run_into_with, run_with, Output, OutputInfo, Prepared,
    RunOptions, Timings,
};
pub use sink::{Finished, Sink};
pub use variants::{parse_variant_list, prepare_variants, MAX_VARIANTS};

/// The `image` crate version this crate is built against, re-exported so callers name the
/// same `ImageFormat` / `DynamicImage` types.
pub use image;

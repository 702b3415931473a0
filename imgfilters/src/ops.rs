//! Op-spec types and their text form (part of the wire protocol).
//!
//! Trust boundary: the spec text comes straight from the network. Parsing is strict and bounded
//! (length, step count, numeric ranges), and [`Op::validate`] re-checks every value so that a
//! `Pipeline` built in code cannot smuggle in what the parser would refuse. The grammar is
//! defined in docs/PROTOCOL.md section 12 and repeated in the crate docs (`lib.rs`); the
//! parser accepts exactly that language (white space, number syntax and all).

use std::fmt;
use std::str::FromStr;

use crate::error::{FilterError, SpecError};
use crate::limits::{Limits, DEFAULT_MAX_OPS};

/// Longest accepted spec text, in bytes.
pub const MAX_SPEC_LEN: usize = 1024;
/// Largest width, height, crop offset or thumbnail box side accepted in a spec.
pub const MAX_DIMENSION: u32 = 65535;
/// Largest accepted blur / sharpen sigma.
pub const MAX_SIGMA: f32 = 100.0;
/// Default JPEG quality for `format:jpeg` without a quality.
pub const DEFAULT_JPEG_QUALITY: u8 = 85;
/// Default AVIF quality for `format:avif` without a quality: libavif's default for `avifenc`
/// (ravif's 1..=100 scale maps onto the AV1 quantiser the same way; lower is smaller).
pub const DEFAULT_AVIF_QUALITY: u8 = 60;
/// Largest `scale` percentage (10x enlargement; the pixel limit applies as well).
pub const MAX_SCALE_PERCENT: u32 = 1000;

/// One filter step.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Gaussian blur, `0 < sigma <= 100`.
    Blur {
        sigma: f32,
    },
    /// Unsharp mask: `0 < sigma <= 100`; only channel differences larger than `threshold`
    /// (`0..=65535`, in the image's own sample units) are sharpened.
    Sharpen {
        sigma: f32,
        threshold: i32,
    },
    /// Resize to a box. A `0` width or height means "derived from the other side, keeping the
    /// aspect ratio" (only with [`ResizeMode::Fit`]); both `0` is invalid.
    Resize {
        width: u32,
        height: u32,
        mode: ResizeMode,
        filter: ResizeFilter,
    },
    /// Scale both sides by `percent` (1..=1000), rounding down, at least 1 pixel: the same
    /// resampling as an exact resize to those dimensions, without knowing the size up front.
    Scale {
        percent: u32,
        filter: ResizeFilter,
    },
    /// Fit inside `max x max` with the fast integer thumbnail algorithm; never enlarges.
    Thumbnail {
        max: u32,
    },
    /// Cut out a rectangle; it must lie entirely inside the image.
    Crop {
        x: u32,
        y: u32,
        width: u32,
        height: u32,
    },
    /// Clockwise rotation.
    Rotate(Rotation),
    Flip(FlipAxis),
    /// Luma conversion; keeps alpha (LumaA) when the input has alpha.
    Grayscale,
    Invert,
    /// Added to every colour channel, in 8-bit units (`-255..=255`; scaled for 16-bit images).
    Brightness(i32),
    /// The `image` crate's contrast adjustment, in percent (`-100..=100`); positive increases.
    Contrast(f32),
    /// Does nothing: `noop` alone means decode + encode only.
    Noop,
}

/// How [`Op::Resize`] maps the image onto the `width x height` box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResizeMode {
    /// Keep the aspect ratio, largest size inside the box.
    #[default]
    Fit,
    /// Keep the aspect ratio, cover the box, centre-crop the overflow.
    Fill,
    /// Stretch to exactly the box.
    Exact,
}

/// Resampling filter of [`Op::Resize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResizeFilter {
    Nearest,
    Triangle,
    CatmullRom,
    Gaussian,
    #[default]
    Lanczos3,
}

/// Clockwise rotation angle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    Deg90,
    Deg180,
    Deg270,
}

/// Mirror axis: `Horizontal` mirrors left-right, `Vertical` mirrors top-bottom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlipAxis {
    Horizontal,
    Vertical,
}

/// Encoding of the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// The input's format.
    #[default]
    Same,
    Png,
    /// `quality` is `1..=100`.
    Jpeg {
        quality: u8,
    },
    Gif,
    /// `format:webp` (or `format:webp:lossless`): lossless WebP, what plain `format:webp`
    /// has always meant.
    Webp,
    /// `format:webp:Q`: lossy WebP, `quality` is `1..=100`.
    WebpLossy {
        quality: u8,
    },
    /// `format:avif` or `format:avif:Q`: AVIF (output only), `quality` is `1..=100`.
    Avif {
        quality: u8,
    },
    Bmp,
    Tiff,
}

/// A parsed op spec: the filter steps and the output encoding.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Pipeline {
    pub ops: Vec<Op>,
    pub output: OutputFormat,
}

const SIGMA_RANGE: &str = "0 < sigma <= 100";
const DIM_RANGE: &str = "1..=65535";
const COORD_RANGE: &str = "0..=65535";

impl Op {
    /// The op's name in spec text.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Blur { .. } => "blur",
            Op::Sharpen { .. } => "sharpen",
            Op::Resize { .. } => "resize",
            Op::Scale { .. } => "scale",
            Op::Thumbnail { .. } => "thumbnail",
            Op::Crop { .. } => "crop",
            Op::Rotate(_) => "rotate",
            Op::Flip(_) => "flip",
            Op::Grayscale => "grayscale",
            Op::Invert => "invert",
            Op::Brightness(_) => "brightness",
            Op::Contrast(_) => "contrast",
            Op::Noop => "noop",
        }
    }

    /// Checks every value against the ranges the parser enforces.
    pub fn validate(&self) -> Result<(), SpecError> {
        let op = self.name();
        match *self {
            Op::Blur { sigma } => check_sigma(op, sigma),
            Op::Sharpen { sigma, threshold } => {
                check_sigma(op, sigma)?;
                if !(0..=65535).contains(&threshold) {
                    return Err(out_of_range(op, "threshold", threshold, "0..=65535"));
                }
                Ok(())
            }
            Op::Resize {
                width,
                height,
                mode,
                ..
            } => {
                if width == 0 && height == 0 {
                    return Err(SpecError::WrongArgs {
                        op,
                        expected: "WxH, Wx or xH with at least one side",
                    });
                }
                if (width == 0 || height == 0) && mode != ResizeMode::Fit {
                    return Err(SpecError::WrongArgs {
                        op,
                        expected: "both width and height for fill or exact mode",
                    });
                }
                // 0 means "auto" here (only the caps apply).
                check_max(op, "width", width)?;
                check_max(op, "height", height)
            }
            Op::Scale { percent, .. } => {
                if (1..=MAX_SCALE_PERCENT).contains(&percent) {
                    Ok(())
                } else {
                    Err(out_of_range(op, "percent", percent, "1..=1000"))
                }
            }
            Op::Thumbnail { max } => check_dim(op, "size", max),
            Op::Crop {
                x,
                y,
                width,
                height,
            } => {
                check_max(op, "x", x)?;
                check_max(op, "y", y)?;
                check_dim(op, "width", width)?;
                check_dim(op, "height", height)
            }
            Op::Brightness(v) => {
                if !(-255..=255).contains(&v) {
                    return Err(out_of_range(op, "value", v, "-255..=255"));
                }
                Ok(())
            }
            Op::Contrast(c) => {
                if !c.is_finite() {
                    return Err(SpecError::NotFinite { op, what: "value" });
                }
                if !(-100.0..=100.0).contains(&c) {
                    return Err(out_of_range(op, "value", c, "-100..=100"));
                }
                Ok(())
            }
            Op::Rotate(_) | Op::Flip(_) | Op::Grayscale | Op::Invert | Op::Noop => Ok(()),
        }
    }
}

impl OutputFormat {
    /// Checks the quality range of the lossy formats.
    pub fn validate(&self) -> Result<(), SpecError> {
        let (what, quality) = match *self {
            OutputFormat::Jpeg { quality } => ("jpeg quality", quality),
            OutputFormat::WebpLossy { quality } => ("webp quality", quality),
            OutputFormat::Avif { quality } => ("avif quality", quality),
            _ => return Ok(()),
        };
        if !(1..=100).contains(&quality) {
            return Err(out_of_range("format", what, quality, "1..=100"));
        }
        Ok(())
    }
}

impl Pipeline {
    /// Parses spec text with `limits.max_ops` as the op limit ([`FromStr`] uses the default 16).
    pub fn parse_with_limits(text: &str, limits: &Limits) -> Result<Pipeline, FilterError> {
        parse(text, limits.max_ops)
    }

    /// Re-checks a pipeline (e.g. one built in code) against the parser's rules.
    pub fn validate(&self, limits: &Limits) -> Result<(), FilterError> {
        if self.ops.len() > limits.max_ops {
            return Err(FilterError::spec(
                None,
                SpecError::TooManyOps {
                    count: self.ops.len(),
                    max: limits.max_ops,
                },
            ));
        }
        for (i, op) in self.ops.iter().enumerate() {
            op.validate()
                .map_err(|r| FilterError::spec(Some(i + 1), r))?;
        }
        self.output
            .validate()
            .map_err(|r| FilterError::spec(Some(self.ops.len() + 1), r))
    }
}

impl FromStr for Pipeline {
    type Err = FilterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s, DEFAULT_MAX_OPS)
    }
}

fn parse(text: &str, max_ops: usize) -> Result<Pipeline, FilterError> {
    if text.len() > MAX_SPEC_LEN {
        return Err(FilterError::spec(
            None,
            SpecError::TooLong {
                len: text.len(),
                max: MAX_SPEC_LEN,
            },
        ));
    }
    let mut pipeline = Pipeline::default();
    // An all-blank spec is the empty pipeline; otherwise every step must be non-empty, so that
    // a stray comma is reported instead of silently ignored.
    if trim_wsp(text).is_empty() {
        return Ok(pipeline);
    }
    let mut format_seen = false;
    for (i, raw) in text.split(',').enumerate() {
        let step = Some(i + 1);
        let err = |r| FilterError::spec(step, r);
        if format_seen {
            return Err(err(SpecError::FormatNotLast));
        }
        let s = trim_wsp(raw);
        let (name, args) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        if name.is_empty() {
            return Err(err(SpecError::EmptyStep));
        }
        if name == "format" {
            pipeline.output = parse_format(args).map_err(err)?;
            format_seen = true;
            continue;
        }
        let op = parse_op(name, args).map_err(err)?;
        op.validate().map_err(err)?;
        pipeline.ops.push(op);
        if pipeline.ops.len() > max_ops {
            // Counting the whole text keeps the message useful and the cost bounded by
            // MAX_SPEC_LEN.
            let count = pipeline.ops.len()
                + text
                    .split(',')
                    .skip(i + 1)
                    .filter(|s| trim_wsp(s).split(':').next() != Some("format"))
                    .count();
            return Err(FilterError::spec(
                None,
                SpecError::TooManyOps {
                    count,
                    max: max_ops,
                },
            ));
        }
    }
    Ok(pipeline)
}

/// The `:`-separated arguments of a step; `None` (no `:` at all) is zero arguments, while
/// `name:` is one empty argument (and then refused by the number parsers).
fn split_args(args: Option<&str>) -> Vec<&str> {
    args.map(|a| a.split(':').collect()).unwrap_or_default()
}

fn parse_op(name: &str, args: Option<&str>) -> Result<Op, SpecError> {
    let a = split_args(args);
    let op: &'static str = match name {
        "blur" => "blur",
        "sharpen" => "sharpen",
        "resize" => "resize",
        "scale" => "scale",
        "thumbnail" => "thumbnail",
        "crop" => "crop",
        "rotate" => "rotate",
        "flip" => "flip",
        "grayscale" => "grayscale",
        "invert" => "invert",
        "brightness" => "brightness",
        "contrast" => "contrast",
        "noop" => "noop",
        other => return Err(SpecError::UnknownOp(excerpt(other))),
    };
    let wrong = |expected| SpecError::WrongArgs { op, expected };
    Ok(match (op, a.as_slice()) {
        ("blur", [s]) => Op::Blur {
            sigma: parse_decimal(op, "sigma", s, Sign::Unsigned)?,
        },
        ("blur", _) => return Err(wrong("blur:SIGMA")),
        ("sharpen", [s]) => Op::Sharpen {
            sigma: parse_decimal(op, "sigma", s, Sign::Unsigned)?,
            threshold: 0,
        },
        ("sharpen", [s, t]) => Op::Sharpen {
            sigma: parse_decimal(op, "sigma", s, Sign::Unsigned)?,
            threshold: parse_integer(op, "threshold", t, Sign::Unsigned)?,
        },
        ("sharpen", _) => return Err(wrong("sharpen:SIGMA or sharpen:SIGMA:THRESHOLD")),
        ("resize", [size, rest @ ..]) if rest.len() <= 2 => parse_resize(size, rest)?,
        ("resize", _) => return Err(wrong("resize:WxH[:MODE][:FILTER]")),
        ("scale", [p]) => Op::Scale {
            percent: parse_integer(op, "percent", p, Sign::Unsigned)?,
            filter: ResizeFilter::default(),
        },
        ("scale", [p, f]) => Op::Scale {
            percent: parse_integer(op, "percent", p, Sign::Unsigned)?,
            filter: resize_filter(f).ok_or_else(|| {
                keyword(
                    op,
                    "filter (nearest, triangle, catmullrom, gaussian, lanczos3)",
                    f,
                )
            })?,
        },
        ("scale", _) => return Err(wrong("scale:PERCENT[:FILTER]")),
        ("thumbnail", [m]) => Op::Thumbnail {
            max: parse_integer(op, "size", m, Sign::Unsigned)?,
        },
        ("thumbnail", _) => return Err(wrong("thumbnail:N")),
        ("crop", [x, y, size]) => {
            let (width, height) = parse_size(op, size)?;
            let (Some(width), Some(height)) = (width, height) else {
                return Err(wrong("crop:X:Y:WxH"));
            };
            Op::Crop {
                x: parse_integer(op, "x", x, Sign::Unsigned)?,
                y: parse_integer(op, "y", y, Sign::Unsigned)?,
                width,
                height,
            }
        }
        ("crop", _) => return Err(wrong("crop:X:Y:WxH")),
        ("rotate", [r]) => Op::Rotate(match *r {
            "90" => Rotation::Deg90,
            "180" => Rotation::Deg180,
            "270" => Rotation::Deg270,
            other => return Err(keyword(op, "angle (90, 180, 270)", other)),
        }),
        ("rotate", _) => return Err(wrong("rotate:90, rotate:180 or rotate:270")),
        ("flip", [f]) => Op::Flip(match *f {
            "h" => FlipAxis::Horizontal,
            "v" => FlipAxis::Vertical,
            other => return Err(keyword(op, "axis (h, v)", other)),
        }),
        ("flip", _) => return Err(wrong("flip:h or flip:v")),
        ("brightness", [v]) => Op::Brightness(parse_integer(op, "value", v, Sign::Signed)?),
        ("brightness", _) => return Err(wrong("brightness:N")),
        ("contrast", [v]) => Op::Contrast(parse_decimal(op, "value", v, Sign::Signed)?),
        ("contrast", _) => return Err(wrong("contrast:PERCENT")),
        ("grayscale", []) => Op::Grayscale,
        ("invert", []) => Op::Invert,
        ("noop", []) => Op::Noop,
        _ => return Err(wrong("no arguments")),
    })
}

fn parse_resize(size: &str, rest: &[&str]) -> Result<Op, SpecError> {
    const OP: &str = "resize";
    let (w, h) = parse_size(OP, size)?;
    let mut mode = None;
    let mut filter = None;
    // Mode and filter keywords are disjoint, so either order is unambiguous; each at most once.
    for kw in rest {
        if let Some(m) = resize_mode(kw) {
            if mode.replace(m).is_some() {
                return Err(SpecError::WrongArgs {
                    op: OP,
                    expected: "at most one mode",
                });
            }
        } else if let Some(f) = resize_filter(kw) {
            if filter.replace(f).is_some() {
                return Err(SpecError::WrongArgs {
                    op: OP,
                    expected: "at most one filter",
                });
            }
        } else {
            return Err(keyword(
                OP,
                "mode or filter (fit, fill, exact, nearest, triangle, catmullrom, gaussian, lanczos3)",
                kw,
            ));
        }
    }
    // A literal 0 is refused by parse_size; only an omitted side becomes the 0 = auto marker.
    Ok(Op::Resize {
        width: w.unwrap_or(0),
        height: h.unwrap_or(0),
        mode: mode.unwrap_or_default(),
        filter: filter.unwrap_or_default(),
    })
}

/// `WxH`, `Wx` or `xH`; a present side must be `1..=65535`.
fn parse_size(op: &'static str, s: &str) -> Result<(Option<u32>, Option<u32>), SpecError> {
    let Some((w, h)) = s.split_once('x') else {
        return Err(SpecError::BadNumber {
            op,
            what: "size (WxH)",
            text: excerpt(s),
        });
    };
    let side = |what, t: &str| -> Result<Option<u32>, SpecError> {
        if t.is_empty() {
            return Ok(None);
        }
        let v: u32 = parse_integer(op, what, t, Sign::Unsigned)?;
        check_dim(op, what, v)?;
        Ok(Some(v))
    };
    let (w, h) = (side("width", w)?, side("height", h)?);
    if w.is_none() && h.is_none() {
        return Err(SpecError::WrongArgs {
            op,
            expected: "WxH, Wx or xH with at least one side",
        });
    }
    Ok((w, h))
}

fn parse_format(args: Option<&str>) -> Result<OutputFormat, SpecError> {
    const OP: &str = "format";
    let a = split_args(args);
    let fmt = match a.as_slice() {
        ["same"] => OutputFormat::Same,
        ["png"] => OutputFormat::Png,
        ["jpeg" | "jpg"] => OutputFormat::Jpeg {
            quality: DEFAULT_JPEG_QUALITY,
        },
        ["jpeg" | "jpg", q] => OutputFormat::Jpeg {
            quality: parse_integer(OP, "jpeg quality", q, Sign::Unsigned)?,
        },
        ["gif"] => OutputFormat::Gif,
        ["webp"] | ["webp", "lossless"] => OutputFormat::Webp,
        ["webp", q] => OutputFormat::WebpLossy {
            quality: parse_integer(OP, "webp quality", q, Sign::Unsigned)?,
        },
        ["avif"] => OutputFormat::Avif {
            quality: DEFAULT_AVIF_QUALITY,
        },
        ["avif", q] => OutputFormat::Avif {
            quality: parse_integer(OP, "avif quality", q, Sign::Unsigned)?,
        },
        ["bmp"] => OutputFormat::Bmp,
        ["tiff" | "tif"] => OutputFormat::Tiff,
        [other] => {
            return Err(keyword(
                OP,
                "format (same, png, jpeg, gif, webp, avif, bmp, tiff)",
                other,
            ))
        }
        _ => {
            return Err(SpecError::WrongArgs {
                op: OP,
                expected: "format:FMT, format:jpeg:QUALITY, format:webp:QUALITY, format:webp:lossless or format:avif:QUALITY",
            })
        }
    };
    fmt.validate()?;
    Ok(fmt)
}

fn resize_mode(s: &str) -> Option<ResizeMode> {
    Some(match s {
        "fit" => ResizeMode::Fit,
        "fill" => ResizeMode::Fill,
        "exact" => ResizeMode::Exact,
        _ => return None,
    })
}

fn resize_filter(s: &str) -> Option<ResizeFilter> {
    Some(match s {
        "nearest" => ResizeFilter::Nearest,
        "triangle" => ResizeFilter::Triangle,
        "catmullrom" => ResizeFilter::CatmullRom,
        "gaussian" => ResizeFilter::Gaussian,
        "lanczos3" => ResizeFilter::Lanczos3,
        _ => return None,
    })
}

/// The only characters that may surround a step (section 12 of docs/PROTOCOL.md): ASCII space
/// and horizontal tab. Any other character, Unicode white space included, is part of the step
/// and makes it fail.
fn is_wsp(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn trim_wsp(s: &str) -> &str {
    s.trim_matches(is_wsp)
}

/// Whether a number may carry a leading `-` (only where negative values are in range).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sign {
    Unsigned,
    Signed,
}

/// Splits an optional leading `-` (when `sign` allows one) off `s`.
fn unsign(s: &str, sign: Sign) -> &str {
    match sign {
        Sign::Signed => s.strip_prefix('-').unwrap_or(s),
        Sign::Unsigned => s,
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `[ "-" ] 1*DIGIT`: decimal digits only, a `-` only where `sign` allows it. No `+`, no
/// white space, no other base. A value too large for `T` is refused here too (it is outside
/// every range a spec accepts).
fn parse_integer<T: FromStr>(
    op: &'static str,
    what: &'static str,
    s: &str,
    sign: Sign,
) -> Result<T, SpecError> {
    let bad = || SpecError::BadNumber {
        op,
        what,
        text: excerpt(s),
    };
    if !all_digits(unsign(s, sign)) {
        return Err(bad());
    }
    s.parse().map_err(|_| bad())
}

/// `[ "-" ] 1*DIGIT [ "." 1*DIGIT ]`: no exponent, no `+`, no leading or trailing `.`, no
/// `inf` or `NaN`. The value is the decimal number rounded to the nearest `f32` (ties to
/// even), which is what ranges are checked against; one that rounds to infinity is refused.
fn parse_decimal(
    op: &'static str,
    what: &'static str,
    s: &str,
    sign: Sign,
) -> Result<f32, SpecError> {
    let bad = || SpecError::BadNumber {
        op,
        what,
        text: excerpt(s),
    };
    let unsigned = unsign(s, sign);
    let (int, frac) = match unsigned.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (unsigned, None),
    };
    if !all_digits(int) || frac.is_some_and(|f| !all_digits(f)) {
        return Err(bad());
    }
    let v: f32 = s.parse().map_err(|_| bad())?;
    if !v.is_finite() {
        return Err(SpecError::NotFinite { op, what });
    }
    Ok(v)
}

fn check_sigma(op: &'static str, sigma: f32) -> Result<(), SpecError> {
    if !sigma.is_finite() {
        return Err(SpecError::NotFinite { op, what: "sigma" });
    }
    if !(sigma > 0.0 && sigma <= MAX_SIGMA) {
        return Err(out_of_range(op, "sigma", sigma, SIGMA_RANGE));
    }
    Ok(())
}

fn check_dim(op: &'static str, what: &'static str, v: u32) -> Result<(), SpecError> {
    if v == 0 || v > MAX_DIMENSION {
        return Err(out_of_range(op, what, v, DIM_RANGE));
    }
    Ok(())
}

fn check_max(op: &'static str, what: &'static str, v: u32) -> Result<(), SpecError> {
    if v > MAX_DIMENSION {
        return Err(out_of_range(op, what, v, COORD_RANGE));
    }
    Ok(())
}

fn out_of_range(
    op: &'static str,
    what: &'static str,
    value: impl fmt::Display,
    range: &'static str,
) -> SpecError {
    SpecError::OutOfRange {
        op,
        what,
        value: value.to_string(),
        range,
    }
}

fn keyword(op: &'static str, what: &'static str, text: &str) -> SpecError {
    SpecError::UnknownKeyword {
        op,
        what,
        text: excerpt(text),
    }
}

/// Error messages go back to the client and into logs; cap how much of its text we echo.
fn excerpt(s: &str) -> String {
    const MAX: usize = 32;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

impl fmt::Display for ResizeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResizeMode::Fit => "fit",
            ResizeMode::Fill => "fill",
            ResizeMode::Exact => "exact",
        })
    }
}

impl fmt::Display for ResizeFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResizeFilter::Nearest => "nearest",
            ResizeFilter::Triangle => "triangle",
            ResizeFilter::CatmullRom => "catmullrom",
            ResizeFilter::Gaussian => "gaussian",
            ResizeFilter::Lanczos3 => "lanczos3",
        })
    }
}

/// Canonical text: defaults are omitted, floats use Rust's shortest round-trip form, so
/// `text.parse::<Op>()`-equivalent parsing gives back the same value.
impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.name();
        match *self {
            Op::Blur { sigma } => write!(f, "{name}:{sigma}"),
            Op::Sharpen {
                sigma,
                threshold: 0,
            } => write!(f, "{name}:{sigma}"),
            Op::Sharpen { sigma, threshold } => write!(f, "{name}:{sigma}:{threshold}"),
            Op::Resize {
                width,
                height,
                mode,
                filter,
            } => {
                write!(f, "{name}:")?;
                if width != 0 {
                    write!(f, "{width}")?;
                }
                f.write_str("x")?;
                if height != 0 {
                    write!(f, "{height}")?;
                }
                if mode != ResizeMode::default() {
                    write!(f, ":{mode}")?;
                }
                if filter != ResizeFilter::default() {
                    write!(f, ":{filter}")?;
                }
                Ok(())
            }
            Op::Scale { percent, filter } => {
                write!(f, "{name}:{percent}")?;
                if filter != ResizeFilter::default() {
                    write!(f, ":{filter}")?;
                }
                Ok(())
            }
            Op::Thumbnail { max } => write!(f, "{name}:{max}"),
            Op::Crop {
                x,
                y,
                width,
                height,
            } => write!(f, "{name}:{x}:{y}:{width}x{height}"),
            Op::Rotate(r) => {
                let deg = match r {
                    Rotation::Deg90 => 90,
                    Rotation::Deg180 => 180,
                    Rotation::Deg270 => 270,
                };
                write!(f, "{name}:{deg}")
            }
            Op::Flip(FlipAxis::Horizontal) => write!(f, "{name}:h"),
            Op::Flip(FlipAxis::Vertical) => write!(f, "{name}:v"),
            Op::Brightness(v) => write!(f, "{name}:{v}"),
            Op::Contrast(c) => write!(f, "{name}:{c}"),
            Op::Grayscale | Op::Invert | Op::Noop => f.write_str(name),
        }
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputFormat::Same => f.write_str("format:same"),
            OutputFormat::Png => f.write_str("format:png"),
            OutputFormat::Jpeg { quality } => write!(f, "format:jpeg:{quality}"),
            OutputFormat::Gif => f.write_str("format:gif"),
            OutputFormat::Webp => f.write_str("format:webp"),
            OutputFormat::WebpLossy { quality } => write!(f, "format:webp:{quality}"),
            OutputFormat::Avif { quality } => write!(f, "format:avif:{quality}"),
            OutputFormat::Bmp => f.write_str("format:bmp"),
            OutputFormat::Tiff => f.write_str("format:tiff"),
        }
    }
}

impl Pipeline {
    /// The canonical spec text (the `Display` form): equivalent texts (`blur:2`, `blur:2.0`,
    /// ` blur:2 `, defaults spelt out or left out) give the same string, different pipelines
    /// different ones. The server's result cache keys results by it.
    pub fn canonical(&self) -> String {
        self.to_string()
    }
}

/// Canonical spec text; `format:same` is left out, so the empty pipeline prints as `""`.
impl fmt::Display for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        for op in &self.ops {
            write!(f, "{sep}{op}")?;
            sep = ",";
        }
        if self.output != OutputFormat::Same {
            write!(f, "{sep}{}", self.output)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pipeline {
        s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn reason(s: &str) -> (Option<usize>, SpecError) {
        match s.parse::<Pipeline>() {
            Err(FilterError::BadSpec { step, reason }) => (step, reason),
            other => panic!("{s:?} gave {other:?}"),
        }
    }

    #[test]
    fn parses_every_op() {
        let cases: Vec<(&str, Op)> = vec![
            ("blur:2", Op::Blur { sigma: 2.0 }),
            ("blur:0.5", Op::Blur { sigma: 0.5 }),
            (
                "sharpen:1.0",
                Op::Sharpen {
                    sigma: 1.0,
                    threshold: 0,
                },
            ),
            (
                "sharpen:1.5:5",
                Op::Sharpen {
                    sigma: 1.5,
                    threshold: 5,
                },
            ),
            (
                "resize:800x600",
                Op::Resize {
                    width: 800,
                    height: 600,
                    mode: ResizeMode::Fit,
                    filter: ResizeFilter::Lanczos3,
                },
            ),
            (
                "resize:800x600:fill:lanczos3",
                Op::Resize {
                    width: 800,
                    height: 600,
                    mode: ResizeMode::Fill,
                    filter: ResizeFilter::Lanczos3,
                },
            ),
            (
                "resize:10x20:exact",
                Op::Resize {
                    width: 10,
                    height: 20,
                    mode: ResizeMode::Exact,
                    filter: ResizeFilter::Lanczos3,
                },
            ),
            (
                "resize:10x20:nearest:fill",
                Op::Resize {
                    width: 10,
                    height: 20,
                    mode: ResizeMode::Fill,
                    filter: ResizeFilter::Nearest,
                },
            ),
            (
                "resize:800x",
                Op::Resize {
                    width: 800,
                    height: 0,
                    mode: ResizeMode::Fit,
                    filter: ResizeFilter::Lanczos3,
                },
            ),
            (
                "resize:x600:triangle",
                Op::Resize {
                    width: 0,
                    height: 600,
                    mode: ResizeMode::Fit,
                    filter: ResizeFilter::Triangle,
                },
            ),
            (
                "scale:50",
                Op::Scale {
                    percent: 50,
                    filter: ResizeFilter::Lanczos3,
                },
            ),
            (
                "scale:250:nearest",
                Op::Scale {
                    percent: 250,
                    filter: ResizeFilter::Nearest,
                },
            ),
            ("thumbnail:128", Op::Thumbnail { max: 128 }),
            (
                "crop:10:20:300x200",
                Op::Crop {
                    x: 10,
                    y: 20,
                    width: 300,
                    height: 200,
                },
            ),
            ("rotate:90", Op::Rotate(Rotation::Deg90)),
            ("rotate:180", Op::Rotate(Rotation::Deg180)),
            ("rotate:270", Op::Rotate(Rotation::Deg270)),
            ("flip:h", Op::Flip(FlipAxis::Horizontal)),
            ("flip:v", Op::Flip(FlipAxis::Vertical)),
            ("grayscale", Op::Grayscale),
            ("invert", Op::Invert),
            ("brightness:-20", Op::Brightness(-20)),
            ("brightness:255", Op::Brightness(255)),
            ("contrast:1.5", Op::Contrast(1.5)),
            ("contrast:-30", Op::Contrast(-30.0)),
            ("noop", Op::Noop),
        ];
        for (text, op) in cases {
            let got = p(text);
            assert_eq!(got.ops, vec![op], "{text}");
            assert_eq!(got.output, OutputFormat::Same, "{text}");
        }
    }

    #[test]
    fn parses_formats() {
        let cases = [
            ("format:png", OutputFormat::Png),
            ("format:jpeg", OutputFormat::Jpeg { quality: 85 }),
            ("format:jpeg:80", OutputFormat::Jpeg { quality: 80 }),
            ("format:jpg:100", OutputFormat::Jpeg { quality: 100 }),
            ("format:gif", OutputFormat::Gif),
            ("format:webp", OutputFormat::Webp),
            ("format:webp:lossless", OutputFormat::Webp),
            ("format:webp:80", OutputFormat::WebpLossy { quality: 80 }),
            ("format:webp:1", OutputFormat::WebpLossy { quality: 1 }),
            ("format:webp:0100", OutputFormat::WebpLossy { quality: 100 }),
            ("format:avif", OutputFormat::Avif { quality: 60 }),
            ("format:avif:35", OutputFormat::Avif { quality: 35 }),
            ("format:avif:100", OutputFormat::Avif { quality: 100 }),
            ("format:bmp", OutputFormat::Bmp),
            ("format:tiff", OutputFormat::Tiff),
            ("format:tif", OutputFormat::Tiff),
            ("format:same", OutputFormat::Same),
        ];
        for (text, fmt) in cases {
            let got = p(&format!("blur:1,{text}"));
            assert_eq!(got.output, fmt, "{text}");
            assert_eq!(got.ops.len(), 1);
            assert_eq!(p(text).output, fmt, "{text} alone");
        }
    }

    #[test]
    fn tolerates_whitespace_around_steps() {
        let got = p("  blur:2 ,\tinvert , format:png  ");
        assert_eq!(got.ops, vec![Op::Blur { sigma: 2.0 }, Op::Invert]);
        assert_eq!(got.output, OutputFormat::Png);
    }

    #[test]
    fn empty_spec_is_empty_pipeline() {
        assert_eq!(p(""), Pipeline::default());
        assert_eq!(p("   "), Pipeline::default());
    }

    #[test]
    fn display_round_trips() {
        let specs = [
            "",
            "noop",
            "blur:2",
            "blur:0.1,sharpen:0.3333,sharpen:100:65535",
            "resize:800x600,resize:800x,resize:x600",
            "resize:1x1:fill:nearest,resize:65535x65535:exact:catmullrom,resize:5x5:gaussian",
            "thumbnail:128,crop:0:0:1x1,crop:65535:65535:65535x65535",
            "rotate:90,rotate:180,rotate:270,flip:h,flip:v",
            "grayscale,invert,brightness:-255,brightness:0,contrast:-100,contrast:0.001",
            "format:png",
            "invert,format:jpeg:1",
            "invert,format:gif",
            "invert,format:webp",
            "invert,format:webp:80",
            "invert,format:webp:lossless",
            "invert,format:avif",
            "invert,format:avif:1",
            "invert,format:bmp",
            "invert,format:tiff",
            "  blur:0.001 ,\tformat:jpg ",
            "resize:10x20:triangle:fill,contrast:-7.25,brightness:-0",
            "blur:0000002.5000,thumbnail:007",
        ];
        for s in specs {
            let a = p(s);
            let text = a.to_string();
            let b = p(&text);
            assert_eq!(a, b, "{s:?} -> {text:?}");
            // The canonical form is a fixed point.
            assert_eq!(b.to_string(), text);
        }
    }

    #[test]
    fn web_formats_canonical_text() {
        assert_eq!(p("format:webp:lossless").to_string(), "format:webp");
        assert_eq!(p("format:webp:080").to_string(), "format:webp:80");
        assert_eq!(p("format:avif").to_string(), "format:avif:60");
        assert_eq!(
            p("invert,format:avif:7").to_string(),
            "invert,format:avif:7"
        );
    }

    #[test]
    fn scale_values_and_canonical_text() {
        assert_eq!(p("scale:50:lanczos3").to_string(), "scale:50");
        assert_eq!(p("scale:33:triangle").to_string(), "scale:33:triangle");
        for bad in [
            "scale:0",
            "scale:1001",
            "scale:-5",
            "scale:50%",
            "scale",
            "scale:50:fit",
        ] {
            assert!(bad.parse::<Pipeline>().is_err(), "{bad}");
        }
        assert!("scale:1000".parse::<Pipeline>().is_ok());
    }

    #[test]
    fn canonical_is_one_text_for_equivalent_specs() {
        for (a, b) in [
            ("blur:2.0", "blur:2"),
            (" blur:2 ", "blur:2"),
            (
                "resize:800x600:fit:lanczos3,format:jpg",
                "resize:800x600,format:jpeg:85",
            ),
            ("sharpen:1.0:0,format:same", "sharpen:1"),
        ] {
            assert_eq!(p(a).canonical(), p(b).canonical(), "{a} / {b}");
        }
        for (a, b) in [
            ("blur:2", "blur:2.5"),
            ("blur:2", "sharpen:2"),
            ("grayscale,invert", "invert,grayscale"),
            ("format:jpeg:80", "format:jpeg:85"),
        ] {
            assert_ne!(p(a).canonical(), p(b).canonical(), "{a} / {b}");
        }
    }

    #[test]
    fn canonical_text() {
        assert_eq!(
            p("resize:800x600:fit:lanczos3 , format:jpg").to_string(),
            "resize:800x600,format:jpeg:85"
        );
        assert_eq!(
            p("resize:8x6:nearest:exact,sharpen:1.0:0,format:same").to_string(),
            "resize:8x6:exact:nearest,sharpen:1"
        );
    }

    #[test]
    fn unknown_op() {
        assert_eq!(
            reason("blur:1,sepia"),
            (Some(2), SpecError::UnknownOp("sepia".into()))
        );
        // Names are case-sensitive.
        assert_eq!(
            reason("Blur:1"),
            (Some(1), SpecError::UnknownOp("Blur".into()))
        );
    }

    #[test]
    fn bad_numbers() {
        for s in [
            "blur:x",
            "blur:",
            "blur:1.0.0",
            "sharpen:1:1.5",
            "brightness:1.5",
            "contrast:abc",
            "thumbnail:-1",
            "crop:a:0:1x1",
            "resize:axb",
            "resize:99999999999x1",
            "format:jpeg:high",
            "format:jpeg:300",
            "format:webp:lossy",
            "format:webp:300",
            "format:webp:-5",
            "format:avif:high",
            "format:avif:80.5",
            // A '-' only where negative values are allowed (brightness, contrast).
            "blur:-1",
            "sharpen:1:-1",
            "crop:-0:0:1x1",
        ] {
            assert!(
                matches!(reason(s), (Some(1), SpecError::BadNumber { .. })),
                "{s}: {:?}",
                reason(s)
            );
        }
    }

    #[test]
    fn non_finite_numbers() {
        // "inf" and "NaN" are not in the number syntax at all; a decimal too large for f32
        // is in it, and is refused for rounding to infinity.
        for s in [
            "blur:NaN",
            "blur:inf",
            "sharpen:-inf",
            "contrast:nan",
            "contrast:infinity",
        ] {
            assert!(
                matches!(reason(s), (Some(1), SpecError::BadNumber { .. })),
                "{s}: {:?}",
                reason(s)
            );
        }
        let huge = format!("contrast:-1{}", "0".repeat(39));
        assert!(
            matches!(reason(&huge), (Some(1), SpecError::NotFinite { .. })),
            "{:?}",
            reason(&huge)
        );
    }

    /// Everything the grammar of docs/PROTOCOL.md section 12 leaves out is refused, as a
    /// BAD_SPEC error: other number forms than plain decimals, and any white space but ASCII
    /// space and tab around a step.
    #[test]
    fn refuses_what_the_grammar_leaves_out() {
        let bad_numbers = [
            "blur:1e1",
            "blur:1E1",
            "blur:.5",
            "blur:5.",
            "blur:1.5.",
            "blur:+2",
            "contrast:+10",
            "contrast:-.5",
            "contrast:--5",
            "brightness:+10",
            "brightness:-",
            "thumbnail:+10",
            "thumbnail:0x10",
            "thumbnail:1_000",
            "thumbnail:1 0",
            "resize:+10x10",
            "format:jpeg:+80",
            "scale:\u{ff15}0", // a full-width digit
            "blur:1\u{b}",
            "blur:2\u{2028}",
            "blur:2\u{85}",
            "blur:2\u{a0}",
        ];
        for s in bad_numbers {
            assert!(
                matches!(reason(s), (Some(1), SpecError::BadNumber { .. })),
                "{s:?}: {:?}",
                reason(s)
            );
        }
        // White space other than space and tab is not trimmed: it stays part of the step.
        for (s, step) in [
            ("\u{b}invert", 1),
            ("\u{c}invert", 1),
            ("invert\n", 1),
            ("invert\r", 1),
            ("invert,\u{2028}blur:1", 2),
            ("invert,\u{2029}blur:1", 2),
            ("\u{85}invert", 1),
            ("\u{a0}invert", 1),
            ("\u{3000}invert", 1),
            ("\u{feff}invert", 1),
            ("\u{b}", 1),
            ("\n", 1),
        ] {
            assert!(
                matches!(reason(s), (Some(n), SpecError::UnknownOp(_)) if n == step),
                "{s:?}: {:?}",
                reason(s)
            );
        }
        // Inside a step, even space and tab are refused.
        assert!(matches!(
            reason("blur: 2"),
            (Some(1), SpecError::BadNumber { .. })
        ));
        assert!(matches!(
            reason("blur :2"),
            (Some(1), SpecError::UnknownOp(_))
        ));
        // Every refusal is the BAD_SPEC kind the server answers with.
        for s in bad_numbers {
            assert_eq!(s.parse::<Pipeline>().unwrap_err().kind(), "bad_spec");
        }
        // What the grammar does allow around and inside numbers.
        assert_eq!(p(" \t blur:2 \t ").ops, vec![Op::Blur { sigma: 2.0 }]);
        assert_eq!(p("\t \t"), Pipeline::default());
        assert_eq!(p("blur:002.50").ops, vec![Op::Blur { sigma: 2.5 }]);
        assert_eq!(p("contrast:-0.5").ops, vec![Op::Contrast(-0.5)]);
        assert_eq!(p("brightness:-007").ops, vec![Op::Brightness(-7)]);
    }

    /// Decimals are rounded to the nearest f32 and the range is checked on the result.
    #[test]
    fn decimals_round_to_f32_before_the_range_check() {
        // 100.000001 is nearer to 100 than to the next f32 (100.0000076...).
        assert_eq!(p("blur:100.000001").ops, vec![Op::Blur { sigma: 100.0 }]);
        assert!(matches!(
            reason("blur:100.00001"),
            (Some(1), SpecError::OutOfRange { .. })
        ));
        // Any number of fraction digits.
        let long = format!("blur:0.{}1", "0".repeat(60));
        assert!(matches!(
            reason(&long),
            (Some(1), SpecError::OutOfRange { .. })
        ));
        assert_eq!(
            p(&format!("blur:1.{}", "5".repeat(100))).to_string(),
            "blur:1.5555556"
        );
    }

    /// Every op spec the protocol document shows as an example is valid.
    #[test]
    fn the_documented_examples_parse() {
        let doc = include_str!("../../docs/PROTOCOL.md");
        let section = &doc[doc.find("## 12. Op-spec text").unwrap()..];
        let section = &section[..section.find("\n---").unwrap()];
        let examples = section
            .split("Examples:")
            .nth(1)
            .expect("an Examples: paragraph");
        let examples = &examples[..examples.find("\n\n").unwrap_or(examples.len())];
        let specs: Vec<&str> = examples.split('`').skip(1).step_by(2).collect();
        assert!(specs.len() >= 10, "{specs:?}");
        for s in specs {
            p(s);
        }
    }

    #[test]
    fn out_of_range_values() {
        for s in [
            "blur:0",
            "blur:0.0",
            "blur:100.5",
            "sharpen:0",
            "sharpen:1:65536",
            "resize:0x600",
            "resize:800x0",
            "resize:65536x1",
            "thumbnail:0",
            "thumbnail:70000",
            "crop:0:0:0x5",
            "crop:65536:0:1x1",
            "brightness:256",
            "brightness:-300",
            "contrast:100.01",
            "contrast:-101",
            "format:jpeg:0",
            "format:jpeg:101",
            "format:webp:0",
            "format:webp:101",
            "format:avif:0",
            "format:avif:101",
            "format:avif:255",
        ] {
            assert!(
                matches!(reason(s), (Some(1), SpecError::OutOfRange { .. })),
                "{s}: {:?}",
                reason(s)
            );
        }
        assert_eq!(
            reason("invert,blur:101"),
            (
                Some(2),
                SpecError::OutOfRange {
                    op: "blur",
                    what: "sigma",
                    value: "101".into(),
                    range: SIGMA_RANGE
                }
            )
        );
    }

    #[test]
    fn wrong_argument_shapes() {
        for s in [
            "blur",
            "blur:1:2",
            "sharpen:1:2:3",
            "resize",
            "resize:x",
            "resize:800x:fill",
            "resize:x600:exact",
            "resize:1x1:fit:fill",
            "resize:1x1:nearest:triangle",
            "resize:1x1:fit:nearest:extra",
            "crop:1:2",
            "crop:1:2:3x",
            "rotate",
            "flip",
            "grayscale:1",
            "invert:",
            "noop:x",
            "thumbnail:1:2",
            "format:jpeg:80:1",
            "format:webp:80:1",
            "format:webp:lossless:80",
            "format:avif:60:1",
            "format:png:80",
            "format",
        ] {
            assert!(
                matches!(reason(s), (Some(1), SpecError::WrongArgs { .. })),
                "{s}: {:?}",
                reason(s)
            );
        }
    }

    #[test]
    fn unknown_keywords() {
        for s in [
            "rotate:45",
            "rotate:-90",
            "flip:x",
            "resize:1x1:bicubic",
            "format:heic",
            "format:AVIF",
            "format:PNG",
        ] {
            assert!(
                matches!(reason(s), (Some(1), SpecError::UnknownKeyword { .. })),
                "{s}: {:?}",
                reason(s)
            );
        }
    }

    #[test]
    fn empty_steps() {
        assert_eq!(reason("blur:1,,invert"), (Some(2), SpecError::EmptyStep));
        assert_eq!(reason("blur:1,"), (Some(2), SpecError::EmptyStep));
        assert_eq!(reason(",blur:1"), (Some(1), SpecError::EmptyStep));
        assert_eq!(reason(":1"), (Some(1), SpecError::EmptyStep));
    }

    #[test]
    fn format_must_be_last_and_single() {
        assert_eq!(
            reason("format:png,blur:1"),
            (Some(2), SpecError::FormatNotLast)
        );
        assert_eq!(
            reason("format:png,format:gif"),
            (Some(2), SpecError::FormatNotLast)
        );
    }

    #[test]
    fn too_many_ops() {
        let ok = vec!["invert"; 16].join(",") + ",format:png";
        assert_eq!(p(&ok).ops.len(), 16);
        let bad = vec!["invert"; 20].join(",");
        assert_eq!(
            reason(&bad),
            (None, SpecError::TooManyOps { count: 20, max: 16 })
        );
        let limits = Limits {
            max_ops: 2,
            ..Limits::default()
        };
        assert!(Pipeline::parse_with_limits("invert,invert", &limits).is_ok());
        assert_eq!(
            Pipeline::parse_with_limits("invert,invert,invert", &limits),
            Err(FilterError::BadSpec {
                step: None,
                reason: SpecError::TooManyOps { count: 3, max: 2 }
            })
        );
    }

    #[test]
    fn too_long() {
        let text = "noop,".repeat(205); // 1025 bytes
        assert_eq!(
            reason(&text),
            (
                None,
                SpecError::TooLong {
                    len: 1025,
                    max: MAX_SPEC_LEN
                }
            )
        );
    }

    #[test]
    fn validate_catches_what_parser_would_refuse() {
        let l = Limits::default();
        let bad = [
            Op::Blur { sigma: f32::NAN },
            Op::Blur { sigma: 0.0 },
            Op::Sharpen {
                sigma: 1.0,
                threshold: -1,
            },
            Op::Resize {
                width: 0,
                height: 0,
                mode: ResizeMode::Fit,
                filter: ResizeFilter::Nearest,
            },
            Op::Resize {
                width: 10,
                height: 0,
                mode: ResizeMode::Fill,
                filter: ResizeFilter::Nearest,
            },
            Op::Resize {
                width: 70000,
                height: 1,
                mode: ResizeMode::Exact,
                filter: ResizeFilter::Nearest,
            },
            Op::Thumbnail { max: 0 },
            Op::Crop {
                x: 0,
                y: 0,
                width: 0,
                height: 1,
            },
            Op::Brightness(i32::MIN),
            Op::Contrast(f32::INFINITY),
        ];
        for op in bad {
            let pl = Pipeline {
                ops: vec![Op::Noop, op.clone()],
                output: OutputFormat::Same,
            };
            assert!(
                matches!(
                    pl.validate(&l),
                    Err(FilterError::BadSpec { step: Some(2), .. })
                ),
                "{op:?}"
            );
        }
        for output in [
            OutputFormat::Jpeg { quality: 0 },
            OutputFormat::WebpLossy { quality: 0 },
            OutputFormat::WebpLossy { quality: 101 },
            OutputFormat::Avif { quality: 0 },
            OutputFormat::Avif { quality: 200 },
        ] {
            let pl = Pipeline {
                ops: vec![],
                output,
            };
            assert!(pl.validate(&l).is_err(), "{output:?}");
        }
    }

    #[test]
    fn error_messages_name_the_problem() {
        let e = "invert,blur:abc".parse::<Pipeline>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad op spec (step 2): blur: sigma \"abc\" is not a valid number"
        );
        assert_eq!(e.kind(), "bad_spec");
        let long = format!("{}:1", "z".repeat(100));
        let msg = long.parse::<Pipeline>().unwrap_err().to_string();
        assert!(msg.len() < 100, "{msg}");
    }
}

//! The filter commands' command line: one clap subcommand per filter plus `run --ops`, their
//! shared input/output flags, and the pure functions that turn them into a validated op
//! pipeline with an output format.
//!
//! Trust boundary: user input from argv. Everything is validated here (op specs with the same
//! parser the server uses) so that a typo is a usage error (exit 1) before any connection is
//! made or any file is written.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use imgfilters::{FlipAxis, Op, OutputFormat, Pipeline, ResizeFilter, ResizeMode, Rotation};

use crate::exit::Failure;
use crate::spec::{extension, parse_spec};

/// The filter subcommands (flattened into the top-level command list by `cli`).
#[derive(Debug, Subcommand)]
pub enum FilterCommand {
    /// Gaussian blur.
    Blur {
        /// Standard deviation in pixels (0 < SIGMA <= 100).
        #[arg(long, default_value_t = 2.0)]
        sigma: f32,
        #[command(flatten)]
        io: FilterIo,
    },
    /// Unsharp mask.
    Sharpen {
        /// Blur radius of the mask (0 < SIGMA <= 100).
        #[arg(long, default_value_t = 1.0)]
        sigma: f32,
        /// Only sharpen differences larger than this (0..=65535).
        #[arg(long, default_value_t = 0)]
        threshold: i32,
        #[command(flatten)]
        io: FilterIo,
    },
    /// Resize to a box (give --width, --height or both).
    Resize {
        #[arg(long)]
        width: Option<u32>,
        #[arg(long)]
        height: Option<u32>,
        /// fit keeps the aspect ratio inside the box, fill covers it and crops, exact stretches.
        #[arg(long, value_enum, default_value_t = ModeArg::Fit)]
        mode: ModeArg,
        /// Resampling filter.
        #[arg(long, value_enum, default_value_t = FilterArg::Lanczos3)]
        filter: FilterArg,
        #[command(flatten)]
        io: FilterIo,
    },
    /// Scale both sides by a percentage (rounded down, at least 1 pixel).
    Scale {
        /// Percent of the original size (1..=1000).
        #[arg(long)]
        percent: u32,
        /// Resampling filter.
        #[arg(long, value_enum, default_value_t = FilterArg::Lanczos3)]
        filter: FilterArg,
        #[command(flatten)]
        io: FilterIo,
    },
    /// Fast thumbnail fitting inside SIZE x SIZE (never enlarges).
    Thumbnail {
        #[arg(long, default_value_t = 128)]
        size: u32,
        #[command(flatten)]
        io: FilterIo,
    },
    /// Cut out a rectangle (it must lie inside the image).
    Crop {
        #[arg(long, default_value_t = 0)]
        x: u32,
        #[arg(long, default_value_t = 0)]
        y: u32,
        #[arg(long)]
        width: u32,
        #[arg(long)]
        height: u32,
        #[command(flatten)]
        io: FilterIo,
    },
    /// Rotate clockwise.
    Rotate {
        #[arg(long, value_parser = ["90", "180", "270"], default_value = "90")]
        degrees: String,
        #[command(flatten)]
        io: FilterIo,
    },
    /// Mirror the image.
    Flip {
        /// h mirrors left-right, v top-bottom.
        #[arg(long, value_enum, default_value_t = AxisArg::H)]
        axis: AxisArg,
        #[command(flatten)]
        io: FilterIo,
    },
    /// Convert to gray.
    Grayscale {
        #[command(flatten)]
        io: FilterIo,
    },
    /// Invert colours.
    Invert {
        #[command(flatten)]
        io: FilterIo,
    },
    /// Add VALUE (-255..=255) to every channel.
    Brightness {
        #[arg(long, allow_negative_numbers = true)]
        value: i32,
        #[command(flatten)]
        io: FilterIo,
    },
    /// Change contrast by VALUE percent (-100..=100).
    Contrast {
        #[arg(long, allow_negative_numbers = true)]
        value: f32,
        #[command(flatten)]
        io: FilterIo,
    },
    /// Apply a pipeline of ops, e.g. --ops "resize:800x600,blur:2,grayscale"; several --ops
    /// make one multi-output job (one upload, one decode) written to -o 'out-{n}.{ext}'.
    Run {
        /// Op spec text (see imgfilters' grammar; a trailing format: step is allowed).
        /// Repeat it (up to 8) for several outputs of one input: -o must then contain {n}
        /// (the variant's number, 1-based) and may contain {ext} (its output format).
        #[arg(long, required = true)]
        ops: Vec<String>,
        #[command(flatten)]
        io: FilterIo,
    },
}

/// Inputs, outputs and execution options shared by every filter command.
#[derive(Debug, Clone, Args)]
pub struct FilterIo {
    /// Input images or directories ('-' reads stdin).
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,

    /// Output file ('-' writes stdout); its extension picks the format.
    #[arg(short, long, value_name = "OUTPUT")]
    pub output: Option<PathBuf>,

    /// Write one output per input into DIR (for several inputs or a directory).
    #[arg(long, value_name = "DIR", conflicts_with = "output")]
    pub out_dir: Option<PathBuf>,

    /// Output format (default: from the -o extension, else the input's).
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,

    /// Quality 1..=100 of lossy output: JPEG (default 85), WebP (given: lossy WebP; without
    /// it WebP is lossless) or AVIF (default 60).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub quality: Option<u8>,

    /// Run the filters in-process (same code as the server), no server needed.
    #[arg(long)]
    pub local: bool,

    /// Connections for a batch of inputs.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub conns: u32,

    /// Jobs in flight per connection (uploads overlap with the server's work).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub window: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    Fit,
    Fill,
    Exact,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FilterArg {
    Nearest,
    Triangle,
    Catmullrom,
    Gaussian,
    Lanczos3,
}

impl FilterArg {
    fn to_op(self) -> ResizeFilter {
        match self {
            FilterArg::Nearest => ResizeFilter::Nearest,
            FilterArg::Triangle => ResizeFilter::Triangle,
            FilterArg::Catmullrom => ResizeFilter::CatmullRom,
            FilterArg::Gaussian => ResizeFilter::Gaussian,
            FilterArg::Lanczos3 => ResizeFilter::Lanczos3,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AxisArg {
    #[value(alias = "horizontal")]
    H,
    #[value(alias = "vertical")]
    V,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Png,
    #[value(alias = "jpg")]
    Jpeg,
    Gif,
    Webp,
    Avif,
    Bmp,
    #[value(alias = "tif")]
    Tiff,
}

impl FormatArg {
    fn output(self, quality: Option<u8>) -> OutputFormat {
        match self {
            FormatArg::Png => OutputFormat::Png,
            FormatArg::Jpeg => OutputFormat::Jpeg {
                quality: quality.unwrap_or(imgfilters::DEFAULT_JPEG_QUALITY),
            },
            FormatArg::Gif => OutputFormat::Gif,
            FormatArg::Webp => match quality {
                Some(quality) => OutputFormat::WebpLossy { quality },
                None => OutputFormat::Webp,
            },
            FormatArg::Avif => OutputFormat::Avif {
                quality: quality.unwrap_or(imgfilters::DEFAULT_AVIF_QUALITY),
            },
            FormatArg::Bmp => OutputFormat::Bmp,
            FormatArg::Tiff => OutputFormat::Tiff,
        }
    }
}

impl FilterCommand {
    /// The command's input/output options.
    pub fn io(&self) -> &FilterIo {
        use FilterCommand::*;
        match self {
            Blur { io, .. }
            | Sharpen { io, .. }
            | Resize { io, .. }
            | Scale { io, .. }
            | Thumbnail { io, .. }
            | Crop { io, .. }
            | Rotate { io, .. }
            | Flip { io, .. }
            | Grayscale { io }
            | Invert { io }
            | Brightness { io, .. }
            | Contrast { io, .. }
            | Run { io, .. } => io,
        }
    }

    /// The pipeline a filter command asks for (without the output format step, which
    /// [`with_output_format`] adds), validated with the server's own parser and rules.
    pub fn pipeline(&self) -> Result<Pipeline, Failure> {
        use FilterCommand::*;
        let op = match self {
            Blur { sigma, .. } => Op::Blur { sigma: *sigma },
            Sharpen {
                sigma, threshold, ..
            } => Op::Sharpen {
                sigma: *sigma,
                threshold: *threshold,
            },
            Resize {
                width,
                height,
                mode,
                filter,
                ..
            } => {
                if width.is_none() && height.is_none() {
                    return Err(Failure::usage("resize", "give --width, --height or both"));
                }
                if *width == Some(0) || *height == Some(0) {
                    return Err(Failure::usage(
                        "resize",
                        "--width and --height must be at least 1",
                    ));
                }
                Op::Resize {
                    width: width.unwrap_or(0),
                    height: height.unwrap_or(0),
                    mode: match mode {
                        ModeArg::Fit => ResizeMode::Fit,
                        ModeArg::Fill => ResizeMode::Fill,
                        ModeArg::Exact => ResizeMode::Exact,
                    },
                    filter: filter.to_op(),
                }
            }
            Scale {
                percent, filter, ..
            } => Op::Scale {
                percent: *percent,
                filter: filter.to_op(),
            },
            Thumbnail { size, .. } => Op::Thumbnail { max: *size },
            Crop {
                x,
                y,
                width,
                height,
                ..
            } => Op::Crop {
                x: *x,
                y: *y,
                width: *width,
                height: *height,
            },
            Rotate { degrees, .. } => Op::Rotate(match degrees.as_str() {
                "180" => Rotation::Deg180,
                "270" => Rotation::Deg270,
                _ => Rotation::Deg90,
            }),
            Flip { axis, .. } => Op::Flip(match axis {
                AxisArg::H => FlipAxis::Horizontal,
                AxisArg::V => FlipAxis::Vertical,
            }),
            Grayscale { .. } => Op::Grayscale,
            Invert { .. } => Op::Invert,
            Brightness { value, .. } => Op::Brightness(*value),
            Contrast { value, .. } => Op::Contrast(*value),
            Run { ops, .. } => return parse_spec(&ops[0]),
        };
        let p = Pipeline {
            ops: vec![op],
            output: OutputFormat::Same,
        };
        p.validate(&imgfilters::Limits::default())
            .map_err(|e| Failure::usage("invalid option", e))?;
        Ok(p)
    }
}

/// The output format from a file name's extension; `None` for no extension or `-`.
pub fn format_from_extension(path: &Path) -> Result<Option<FormatArg>, Failure> {
    if path == Path::new("-") {
        return Ok(None);
    }
    let Some(ext) = path.extension() else {
        return Ok(None);
    };
    let ext = ext.to_string_lossy().to_ascii_lowercase();
    Ok(Some(match ext.as_str() {
        "png" => FormatArg::Png,
        "jpg" | "jpeg" => FormatArg::Jpeg,
        "gif" => FormatArg::Gif,
        "webp" => FormatArg::Webp,
        "avif" => FormatArg::Avif,
        "bmp" => FormatArg::Bmp,
        "tif" | "tiff" => FormatArg::Tiff,
        _ => {
            return Err(Failure::usage(
                format!("output {}", path.display()),
                format!("unknown image extension .{ext}; use --format"),
            ))
        }
    }))
}

/// Adds the output format step: `--format` first, else the `-o` extension, else none (the
/// server keeps the input's format). A format step already in `--ops` wins over both.
pub fn with_output_format(
    mut p: Pipeline,
    format: Option<FormatArg>,
    quality: Option<u8>,
    output: Option<&Path>,
) -> Result<Pipeline, Failure> {
    let chosen = match format {
        Some(f) => Some(f),
        None => match output {
            Some(o) => format_from_extension(o)?,
            None => None,
        },
    };
    let lossy = |f: FormatArg| matches!(f, FormatArg::Jpeg | FormatArg::Webp | FormatArg::Avif);
    if quality.is_some() && chosen.is_some_and(|f| !lossy(f)) {
        return Err(Failure::usage(
            "--quality",
            "applies to JPEG, WebP and AVIF output only",
        ));
    }
    if quality.is_some() && chosen.is_none() && p.output == OutputFormat::Same {
        return Err(Failure::usage(
            "--quality",
            "needs JPEG, WebP or AVIF output (-o NAME.jpg/.webp/.avif or --format)",
        ));
    }
    match (p.output, chosen) {
        (OutputFormat::Same, Some(f)) => p.output = f.output(quality),
        (explicit, Some(f)) if explicit != f.output(quality) => log::warn!(
            "the op spec's format step ({}) wins over the output's format ({f:?})",
            extension(explicit).unwrap_or("same")
        ),
        _ => {}
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::test_cli::parse;

    fn spec_of(args: &[&str]) -> Result<String, Failure> {
        let cmd = parse(args).unwrap().command;
        let io = cmd.io().clone();
        let p = cmd.pipeline()?;
        let p = with_output_format(p, io.format, io.quality, io.output.as_deref())?;
        Ok(p.to_string())
    }

    #[test]
    fn filter_flags_become_op_specs() {
        assert_eq!(
            spec_of(&["blur", "a.png", "-o", "b.png"]).unwrap(),
            "blur:2,format:png"
        );
        assert_eq!(
            spec_of(&["blur", "--sigma", "1.5", "a.png", "-o", "-"]).unwrap(),
            "blur:1.5"
        );
        assert_eq!(
            spec_of(&["resize", "--width", "800", "in.jpg", "-o", "out.jpg"]).unwrap(),
            "resize:800x,format:jpeg:85"
        );
        assert_eq!(
            spec_of(&[
                "resize", "--width", "80", "--height", "60", "--mode", "fill", "--filter",
                "nearest", "a", "-o", "-"
            ])
            .unwrap(),
            "resize:80x60:fill:nearest"
        );
        assert_eq!(
            spec_of(&["sharpen", "--threshold", "5", "a", "-o", "-"]).unwrap(),
            "sharpen:1:5"
        );
        assert_eq!(
            spec_of(&["thumbnail", "a", "-o", "-"]).unwrap(),
            "thumbnail:128"
        );
        assert_eq!(
            spec_of(&["scale", "--percent", "50", "a", "-o", "-"]).unwrap(),
            "scale:50"
        );
        assert_eq!(
            spec_of(&[
                "scale",
                "--percent",
                "150",
                "--filter",
                "triangle",
                "a",
                "-o",
                "-"
            ])
            .unwrap(),
            "scale:150:triangle"
        );
        assert_eq!(
            spec_of(&[
                "crop", "--x", "1", "--y", "2", "--width", "3", "--height", "4", "a", "-o", "-"
            ])
            .unwrap(),
            "crop:1:2:3x4"
        );
        assert_eq!(
            spec_of(&["rotate", "--degrees", "270", "a", "-o", "-"]).unwrap(),
            "rotate:270"
        );
        assert_eq!(
            spec_of(&["flip", "--axis", "vertical", "a", "-o", "-"]).unwrap(),
            "flip:v"
        );
        assert_eq!(
            spec_of(&["grayscale", "a", "-o", "x.webp"]).unwrap(),
            "grayscale,format:webp"
        );
        assert_eq!(spec_of(&["invert", "a", "-o", "-"]).unwrap(), "invert");
        assert_eq!(
            spec_of(&["brightness", "--value", "-20", "a", "-o", "-"]).unwrap(),
            "brightness:-20"
        );
        assert_eq!(
            spec_of(&["contrast", "--value", "15", "a", "-o", "-"]).unwrap(),
            "contrast:15"
        );
        assert_eq!(
            spec_of(&[
                "run",
                "--ops",
                "resize:800x600, blur:2 ,grayscale",
                "in.jpg",
                "-o",
                "out.webp"
            ])
            .unwrap(),
            "resize:800x600,blur:2,grayscale,format:webp"
        );
    }

    #[test]
    fn bad_values_are_usage_errors() {
        use crate::exit::ExitKind;
        for args in [
            &["blur", "--sigma", "0", "a", "-o", "-"][..],
            &["blur", "--sigma", "1000", "a", "-o", "-"],
            &["brightness", "--value", "999", "a", "-o", "-"],
            &["resize", "a", "-o", "-"],
            &["resize", "--width", "0", "a", "-o", "-"],
            &["resize", "--width", "8", "--mode", "fill", "a", "-o", "-"],
            &["run", "--ops", "blur", "a", "-o", "-"],
            &["run", "--ops", "frobnicate:3", "a", "-o", "-"],
            &["blur", "a", "-o", "x.xyz"],
            &["blur", "a", "-o", "x.png", "--quality", "80"],
            &["blur", "a", "--format", "gif", "-o", "x", "--quality", "80"],
            &["blur", "a", "-o", "-", "--quality", "80"],
        ] {
            let e = spec_of(args).unwrap_err();
            assert_eq!(e.kind, ExitKind::Usage, "{args:?}: {e}");
        }
        assert!(parse(&["rotate", "--degrees", "45", "a"]).is_err());
        assert!(parse(&["blur"]).is_err());
        assert!(parse(&["blur", "a", "-o", "x", "--out-dir", "d"]).is_err());
    }

    #[test]
    fn output_format_choice() {
        let p = || parse_spec("blur:2").unwrap();
        let fmt = |f, q, o: Option<&str>| {
            with_output_format(p(), f, q, o.map(Path::new))
                .unwrap()
                .to_string()
        };
        assert_eq!(fmt(None, None, Some("x.JPG")), "blur:2,format:jpeg:85");
        assert_eq!(fmt(None, Some(70), Some("x.jpeg")), "blur:2,format:jpeg:70");
        assert_eq!(
            fmt(Some(FormatArg::Gif), None, Some("x.png")),
            "blur:2,format:gif"
        );
        assert_eq!(fmt(None, None, Some("-")), "blur:2");
        assert_eq!(fmt(None, None, Some("noext")), "blur:2");
        assert_eq!(fmt(None, None, Some("a.tif")), "blur:2,format:tiff");
        // WebP is lossless unless a quality is given; AVIF has a default quality.
        assert_eq!(fmt(None, None, Some("x.webp")), "blur:2,format:webp");
        assert_eq!(fmt(None, Some(80), Some("x.webp")), "blur:2,format:webp:80");
        assert_eq!(fmt(None, None, Some("x.AVIF")), "blur:2,format:avif:60");
        assert_eq!(fmt(None, Some(40), Some("x.avif")), "blur:2,format:avif:40");
        assert_eq!(
            fmt(Some(FormatArg::Avif), Some(30), Some("-")),
            "blur:2,format:avif:30"
        );
        assert_eq!(fmt(None, None, None), "blur:2");
        // An explicit format step in the spec is kept.
        let q = with_output_format(
            parse_spec("invert,format:bmp").unwrap(),
            None,
            None,
            Some(Path::new("o.png")),
        );
        assert_eq!(q.unwrap().to_string(), "invert,format:bmp");
        assert_eq!(extension(OutputFormat::Jpeg { quality: 3 }), Some("jpg"));
    }
}

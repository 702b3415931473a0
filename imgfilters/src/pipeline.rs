//! One request end to end: validate, decode, apply the ops, encode; or in two halves,
//! [`prepare`] (everything up to the encoding) and [`Prepared::encode`] (into a [`Sink`]), so
//! the output may go into the memory the input was read from.
//!
//! Trust boundary: entry point for hostile image bytes plus an op spec from the network. Checks
//! run cheapest first: the spec (no image work at all), then the input length and header, then
//! the geometry of every op against the upright header dimensions, and only then the pixel
//! decode. A request that would be refused anyway therefore costs no decode.
//!
//! Shrink-on-load (see `shrink.rs`) is decided in the same dry run: the first op's target
//! size goes to the decoder, and if the JPEG came back smaller, that op is finished by
//! `shrink::finish` towards the size computed from the full image.

use std::time::{Duration, Instant};

use image::{DynamicImage, ImageFormat};

use crate::decode::{decode, Decoded};
use crate::error::FilterError;
use crate::filters::{apply_with_limits, output_dimensions};
use crate::format::{encode, resolve};
use crate::limits::Limits;
use crate::ops::Pipeline;
use crate::shrink;
use crate::sink::Sink;

/// How [`run_with`] decodes; [`run`] uses the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    /// Decode a JPEG at 1/2, 1/4 or 1/8 of its size with libjpeg-turbo's DCT scaling when the
    /// first op is a resize or scale (not `nearest`) down to at most that size, then resample to the exact target (as
    /// libvips and sharp do by default). The output has the same dimensions either way and
    /// differs little (PSNR >= 35 dB against full decode + resize, tests/fidelity.rs); it
    /// costs a fraction of the decode. On by default; without the `turbojpeg` feature it has
    /// no effect.
    pub shrink_on_load: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            shrink_on_load: true,
        }
    }
}

/// Wall-clock time spent in each stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    /// Header parsing, pixel decoding and EXIF orientation.
    pub decode: Duration,
    /// All ops.
    pub filter: Duration,
    /// Colour conversion for the output format and encoding.
    pub encode: Duration,
}

/// The encoded result of [`run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub bytes: Vec<u8>,
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
    pub timings: Timings,
    /// Set when the decoder recovered from damaged input (libjpeg-turbo's warning, e.g.
    /// "Premature end of JPEG file"): the image was decoded as far as the data allowed.
    pub decode_warning: Option<&'static str>,
    /// The JPEG was decoded at 1/`shrink` of its size (shrink-on-load); 1 for full size.
    pub shrink: u32,
}

/// [`Output`] without the bytes, returned by [`run_into`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputInfo {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
    pub timings: Timings,
    /// See [`Output::decode_warning`].
    pub decode_warning: Option<&'static str>,
    /// See [`Output::shrink`].
    pub shrink: u32,
}

/// Decodes `input`, applies `pipeline` and encodes the result, within `limits`.
///
/// Deterministic: the same input, pipeline and build give byte-identical output.
pub fn run(input: &[u8], pipeline: &Pipeline, limits: &Limits) -> Result<Output, FilterError> {
    run_with(input, pipeline, limits, RunOptions::default())
}

/// [`run`] with explicit [`RunOptions`].
pub fn run_with(
    input: &[u8],
    pipeline: &Pipeline,
    limits: &Limits,
    options: RunOptions,
) -> Result<Output, FilterError> {
    let mut bytes = Vec::new();
    let info = run_into_with(input, pipeline, limits, options, &mut bytes)?;
    Ok(Output {
        bytes,
        format: info.format,
        width: info.width,
        height: info.height,
        timings: info.timings,
        decode_warning: info.decode_warning,
        shrink: info.shrink,
    })
}

/// Like [`run`], but writes the encoded image into `out`, which is cleared first and keeps its
/// capacity, so a worker can reuse one buffer across requests. On error `out` is empty.
pub fn run_into(
    input: &[u8],
    pipeline: &Pipeline,
    limits: &Limits,
    out: &mut Vec<u8>,
) -> Result<OutputInfo, FilterError> {
    run_into_with(input, pipeline, limits, RunOptions::default(), out)
}

/// [`run_into`] with explicit [`RunOptions`].
pub fn run_into_with(
    input: &[u8],
    pipeline: &Pipeline,
    limits: &Limits,
    options: RunOptions,
    out: &mut Vec<u8>,
) -> Result<OutputInfo, FilterError> {
    // An empty region: the sink writes straight into `out`, keeping its capacity.
    let mut sink = Sink::with_spill(&mut [], std::mem::take(out));
    let result = prepare_with(input, pipeline, limits, options).and_then(|p| p.encode(&mut sink));
    *out = sink.into_vec();
    result
}

/// A decoded and filtered image, not yet encoded: the first half of a job, from
/// [`prepare`]. It owns its pixels and holds no borrow of the input, so the memory the input
/// came from may be written as soon as this exists: a filter worker encodes it with
/// [`Prepared::encode`] into a [`Sink`] over the same ring slot its input was read from.
#[derive(Debug, Clone)]
pub struct Prepared {
    image: DynamicImage,
    format: ImageFormat,
    quality: Option<u8>,
    decode_warning: Option<&'static str>,
    shrink: u32,
    decode: Duration,
    filter: Duration,
}

impl Prepared {
    /// The output format and dimensions the encoding will have.
    pub fn output(&self) -> (ImageFormat, u32, u32) {
        (self.format, self.image.width(), self.image.height())
    }

    /// Encodes into `sink`, which is cleared first; on error it is left empty. The bytes are
    /// those [`run_into`] gives for the same input and pipeline, wherever the sink puts them.
    pub fn encode(self, sink: &mut Sink) -> Result<OutputInfo, FilterError> {
        let t0 = Instant::now();
        let (format, width, height) = self.output();
        encode(self.image, format, self.quality, sink)?;
        Ok(OutputInfo {
            format,
            width,
            height,
            timings: Timings {
                decode: self.decode,
                filter: self.filter,
                encode: t0.elapsed(),
            },
            decode_warning: self.decode_warning,
            shrink: self.shrink,
        })
    }
}

/// Validates, decodes `input` and applies `pipeline`, within `limits`: everything of [`run`]
/// but the encoding, which [`Prepared::encode`] does.
pub fn prepare(
    input: &[u8],
    pipeline: &Pipeline,
    limits: &Limits,
) -> Result<Prepared, FilterError> {
    prepare_with(input, pipeline, limits, RunOptions::default())
}

/// [`prepare`] with explicit [`RunOptions`].
pub fn prepare_with(
    input: &[u8],
    pipeline: &Pipeline,
    limits: &Limits,
    options: RunOptions,
) -> Result<Prepared, FilterError> {
    pipeline.validate(limits)?;

    let t0 = Instant::now();
    // Upright header size and the first op's target, filled in by the dry run.
    let mut full = (0, 0);
    let mut target = None;
    let decoded = decode(input, limits, |w, h| {
        // Dry run of the whole chain on dimensions only.
        pipeline
            .ops
            .iter()
            .try_fold((w, h), |(w, h), op| output_dimensions(op, w, h, limits))?;
        full = (w, h);
        if options.shrink_on_load {
            target = shrink::target(pipeline.ops.first(), w, h, limits)?;
        }
        Ok(target)
    })?;

    let decode_time = t0.elapsed();
    filter_decoded(decoded, pipeline, target, full, limits, decode_time)
}

/// The second part of [`prepare_with`]: `pipeline` on an image decoded for it (`target` and
/// `full` as its dry run found them), which took `decode` to decode. Shared with the
/// multi-output path (`variants.rs`), so a variant's bytes are those of the separate job.
pub(crate) fn filter_decoded(
    decoded: Decoded,
    pipeline: &Pipeline,
    target: Option<(u32, u32)>,
    full: (u32, u32),
    limits: &Limits,
    decode: Duration,
) -> Result<Prepared, FilterError> {
    let t1 = Instant::now();
    let Decoded {
        image: mut img,
        format: input_format,
        warning,
        shrink,
    } = decoded;
    let mut ops = &pipeline.ops[..];
    if let (Some(size), Some((first, rest))) = (target, ops.split_first()) {
        if shrink > 1 {
            img = shrink::finish(img, first, size, full, shrink);
            ops = rest;
        }
    }
    for op in ops {
        img = apply_with_limits(img, op, limits)?;
    }
    let t2 = Instant::now();

    let (format, quality) = resolve(pipeline.output, input_format);
    Ok(Prepared {
        image: img,
        format,
        quality,
        decode_warning: warning,
        shrink,
        decode,
        filter: t2 - t1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe;
    use crate::sink::Finished;
    use crate::testutil::*;
    use image::{DynamicImage, GenericImageView, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};

    fn gradient(w: u32, h: u32) -> DynamicImage {
        DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
            Rgb([
                (x * 255 / w) as u8,
                (y * 255 / h) as u8,
                ((x + y) % 7 * 30) as u8,
            ])
        }))
    }

    fn spec(s: &str) -> Pipeline {
        s.parse().unwrap()
    }

    fn run_default(input: &[u8], s: &str) -> Result<Output, FilterError> {
        run(input, &spec(s), &Limits::default())
    }

    #[test]
    fn blur_to_jpeg() {
        let input = png(&gradient(40, 30));
        let out = run_default(&input, "blur:2,format:jpeg:80").unwrap();
        assert_eq!(
            (out.format, out.width, out.height),
            (ImageFormat::Jpeg, 40, 30)
        );
        assert_eq!(image::guess_format(&out.bytes).unwrap(), ImageFormat::Jpeg);
        let back = image::load_from_memory(&out.bytes).unwrap();
        assert_eq!(back.dimensions(), (40, 30));
    }

    #[test]
    fn same_format_by_default_and_every_output_format() {
        let input = png(&gradient(20, 10));
        let out = run_default(&input, "invert").unwrap();
        assert_eq!(out.format, ImageFormat::Png);
        for (f, expect) in [
            ("png", ImageFormat::Png),
            ("jpeg", ImageFormat::Jpeg),
            ("gif", ImageFormat::Gif),
            ("webp", ImageFormat::WebP),
            ("bmp", ImageFormat::Bmp),
            ("tiff", ImageFormat::Tiff),
        ] {
            let out = run_default(&input, &format!("rotate:90,format:{f}")).unwrap();
            assert_eq!(out.format, expect);
            assert_eq!(image::guess_format(&out.bytes).unwrap(), expect);
            let back = image::load_from_memory(&out.bytes).unwrap();
            assert_eq!(back.dimensions(), (10, 20), "{f}");
            // And each format is accepted back as input, keeping its format.
            let again = run_default(&out.bytes, "noop").unwrap();
            assert_eq!((again.format, again.width, again.height), (expect, 10, 20));
        }
    }

    #[test]
    fn lossless_round_trip_keeps_pixels() {
        let img = gradient(9, 7);
        let out = run_default(&png(&img), "flip:h,flip:h,format:webp").unwrap();
        let back = image::load_from_memory(&out.bytes).unwrap();
        assert_eq!(back.to_rgb8(), img.to_rgb8());
    }

    #[test]
    fn output_is_deterministic() {
        let input = png(&gradient(50, 40));
        for s in [
            "blur:2,format:jpeg:80",
            "resize:33x21:exact:lanczos3,sharpen:1:2",
            "resize:20x20:fill,contrast:20,format:gif",
            "thumbnail:16,grayscale,format:webp",
        ] {
            let a = run_default(&input, s).unwrap();
            let b = run_default(&input, s).unwrap();
            assert_eq!(a.bytes, b.bytes, "{s}");
        }
    }

    #[test]
    fn run_into_reuses_and_clears_the_buffer() {
        let input = png(&gradient(8, 6));
        let mut buf = vec![0xAA; 100_000];
        let cap = buf.capacity();
        let info = run_into(&input, &spec("invert"), &Limits::default(), &mut buf).unwrap();
        assert_eq!((info.width, info.height), (8, 6));
        assert_eq!(buf.capacity(), cap);
        assert_eq!(&buf[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(buf, run_default(&input, "invert").unwrap().bytes);
        let err = run_into(b"junk", &spec("invert"), &Limits::default(), &mut buf);
        assert!(err.is_err());
        assert!(buf.is_empty());
    }

    /// `prepare` + `Prepared::encode` into a region gives `run_into`'s bytes for every output
    /// format, whether the output fits the region, fits it exactly, or is larger (spilled at
    /// several points), and for JPEG whether libjpeg-turbo's worst case fits the region or not.
    #[test]
    fn encoding_into_a_region_gives_run_intos_bytes() {
        let input = png(&gradient(61, 47));
        let limits = Limits::default();
        for f in ["png", "jpeg:90", "gif", "webp", "bmp", "tiff"] {
            let p = spec(&format!("blur:1,format:{f}"));
            let mut expect = Vec::new();
            let info = run_into(&input, &p, &limits, &mut expect).unwrap();
            let n = expect.len();
            // libjpeg-turbo's worst case for 61x47 4:4:4 is several times the output.
            let worst = 64 * 48 * 6 + 2048;
            let sizes = [0, 1, n / 2, n - 1, n, n + 1, worst - 1, worst, worst + 100];
            for size in sizes {
                let mut region = vec![0x5A; size];
                let mut sink = Sink::new(&mut region);
                let got = prepare(&input, &p, &limits)
                    .unwrap()
                    .encode(&mut sink)
                    .unwrap();
                assert_eq!(
                    (got.format, got.width, got.height),
                    (info.format, info.width, info.height)
                );
                assert_eq!(sink.spilled(), n > size, "{f} into {size}");
                assert_eq!(sink.as_slice(), expect.as_slice(), "{f} into {size}");
                match sink.finish() {
                    Finished::InRegion(len) => assert_eq!(&region[..len], expect.as_slice()),
                    Finished::Spilled(bytes) => assert_eq!(bytes, expect, "{f} into {size}"),
                }
            }
        }
    }

    /// As a worker does: the input is read from the start of a buffer and the output written
    /// over it. The borrow of the input ends with `prepare`, so the buffer is free to lend.
    #[test]
    fn output_may_replace_the_input_in_place() {
        let input = png(&gradient(40, 30));
        let limits = Limits::default();
        for s in ["noop", "resize:20x15,format:jpeg", "invert,format:bmp"] {
            let p = spec(s);
            let expect = run(&input, &p, &limits).unwrap().bytes;
            let mut slot = vec![0; 64 << 10];
            slot[..input.len()].copy_from_slice(&input);
            let prepared = prepare(&slot[..input.len()], &p, &limits).unwrap();
            let mut sink = Sink::new(&mut slot);
            prepared.encode(&mut sink).unwrap();
            let Finished::InRegion(len) = sink.finish() else {
                panic!("{s}: spilled")
            };
            assert_eq!(&slot[..len], expect.as_slice(), "{s}");
        }
    }

    #[test]
    fn an_encode_error_leaves_the_sink_empty() {
        // WebP lossless cannot hold 16385 pixels per side.
        let input = png(&DynamicImage::new_luma8(16385, 1));
        let mut region = vec![0; 1 << 20];
        let mut sink = Sink::new(&mut region);
        sink.extend_from_slice(b"stale");
        let prepared = prepare(&input, &spec("format:webp"), &Limits::default()).unwrap();
        assert_eq!(prepared.output(), (ImageFormat::WebP, 16385, 1));
        assert!(matches!(
            prepared.encode(&mut sink),
            Err(FilterError::Encode(_))
        ));
        assert!(sink.is_empty());
    }

    /// 16x8 JPEG: left half red, right half blue.
    fn halves_jpeg() -> Vec<u8> {
        let img = RgbImage::from_fn(16, 8, |x, _| {
            if x < 8 {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 255])
            }
        });
        encode_as(&DynamicImage::ImageRgb8(img), ImageFormat::Jpeg)
    }

    fn is_red(p: Rgb<u8>) -> bool {
        p[0] > 200 && p[2] < 60
    }

    #[test]
    fn exif_orientation_is_applied_and_stripped() {
        let input = jpeg_with_orientation(&halves_jpeg(), 6);
        assert!(jpeg_markers(&input).contains(&0xe1));
        // The header still says 16x8: probe does not rotate.
        let info = probe(&input).unwrap();
        assert_eq!(
            (info.format, info.width, info.height),
            (ImageFormat::Jpeg, 16, 8)
        );

        let out = run_default(&input, "noop").unwrap();
        assert_eq!(
            (out.format, out.width, out.height),
            (ImageFormat::Jpeg, 8, 16)
        );
        let markers = jpeg_markers(&out.bytes);
        assert!(!markers.contains(&0xe1), "APP1 in output: {markers:x?}");
        assert!(
            !markers.contains(&0xe2),
            "APP2 (ICC) in output: {markers:x?}"
        );
        let back = image::load_from_memory(&out.bytes).unwrap().to_rgb8();
        // Orientation 6 = rotate 90 clockwise: the red left half becomes the top half.
        assert!(is_red(*back.get_pixel(4, 2)));
        assert!(!is_red(*back.get_pixel(4, 13)));

        let out = run_default(&input, "format:png").unwrap();
        assert_eq!((out.width, out.height), (8, 16));
        let chunks = png_chunk_names(&out.bytes);
        assert_eq!(chunks.first().map(String::as_str), Some("IHDR"));
        assert!(!chunks.iter().any(|c| c == "eXIf"), "{chunks:?}");
    }

    #[test]
    fn png_metadata_is_applied_and_stripped() {
        let img = DynamicImage::ImageRgba8(RgbaImage::from_fn(6, 4, |x, y| {
            Rgba([x as u8 * 40, y as u8 * 60, 7, 200])
        }));
        let mut input = png(&img);
        input = png_insert_after_ihdr(&input, &png_chunk(b"tEXt", b"Comment\0secret"));
        // Orientation 3: rotate 180.
        input = png_insert_after_ihdr(&input, &png_chunk(b"eXIf", &exif_tiff_orientation(3)));
        let out = run_default(&input, "noop").unwrap();
        let chunks = png_chunk_names(&out.bytes);
        for c in ["eXIf", "tEXt", "iCCP", "zTXt", "iTXt"] {
            assert!(!chunks.iter().any(|n| n == c), "{c} in {chunks:?}");
        }
        let back = image::load_from_memory(&out.bytes).unwrap().to_rgba8();
        assert_eq!(back.get_pixel(0, 0), &Rgba([5 * 40, 3 * 60, 7, 200]));
    }

    #[test]
    fn animated_gif_yields_its_first_frame() {
        use image::codecs::gif::GifEncoder;
        use image::Frame;
        let frame = |c: [u8; 4]| Frame::new(RgbaImage::from_pixel(6, 4, Rgba(c)));
        let mut input = Vec::new();
        {
            let mut enc = GifEncoder::new(&mut input);
            enc.encode_frames([frame([255, 0, 0, 255]), frame([0, 0, 255, 255])])
                .unwrap();
        }
        let out = run_default(&input, "format:png").unwrap();
        assert_eq!((out.width, out.height), (6, 4));
        let back = image::load_from_memory(&out.bytes).unwrap().to_rgba8();
        assert_eq!(back.get_pixel(3, 2), &Rgba([255, 0, 0, 255]));
    }

    #[test]
    fn huge_declared_dimensions_are_refused_from_the_header() {
        let input = png_with_header(100_000, 100_000);
        // A limit far below the 40 GB the pixels would need shows nothing was allocated for them.
        let limits = Limits {
            max_alloc: 1 << 20,
            ..Limits::default()
        };
        let err = run(&input, &spec("noop"), &limits).unwrap_err();
        assert_eq!(
            err,
            FilterError::TooManyPixels {
                width: 100_000,
                height: 100_000,
                limit: 50_000_000
            }
        );
        let info = probe(&input).unwrap();
        assert_eq!((info.width, info.height), (100_000, 100_000));

        // Within max_pixels but over max_alloc: the decoder limit, not an allocation.
        let input = png_with_header(5000, 5000);
        assert!(matches!(
            run(&input, &spec("noop"), &limits),
            Err(FilterError::LimitExceeded(_))
        ));
        let tight = Limits {
            max_pixels: 1000,
            ..Limits::default()
        };
        assert_eq!(
            run(&png(&gradient(40, 30)), &spec("noop"), &tight).unwrap_err(),
            FilterError::TooManyPixels {
                width: 40,
                height: 30,
                limit: 1000
            }
        );
    }

    #[test]
    fn op_geometry_is_checked_before_decoding() {
        // The pixels of this "image" are garbage, so reaching the decoder would give Decode:
        // getting the geometry errors proves the check happens first.
        let input = png_with_header(100, 100);
        assert!(matches!(
            run_default(&input, "crop:90:90:20x20"),
            Err(FilterError::BadGeometry { .. })
        ));
        assert!(matches!(
            run_default(&input, "resize:65535x65535:exact"),
            Err(FilterError::TooManyPixels { .. })
        ));
        assert!(matches!(
            run_default(&input, "rotate:90,crop:0:0:100x101"),
            Err(FilterError::BadGeometry { .. })
        ));
        assert!(matches!(
            run_default(&input, "noop"),
            Err(FilterError::Decode(_))
        ));
    }

    #[test]
    fn input_and_format_errors() {
        let input = png(&gradient(8, 6));
        let small = Limits {
            max_input_bytes: 10,
            ..Limits::default()
        };
        assert_eq!(
            run(&input, &spec("noop"), &small).unwrap_err(),
            FilterError::InputTooLarge {
                len: input.len() as u64,
                limit: 10
            }
        );
        for junk in [
            &b""[..],
            b"GIF",
            b"not an image at all",
            b"qoif\0\0\0\x01\0\0\0\x01\x03\0",
        ] {
            assert!(
                matches!(
                    run_default(junk, "noop"),
                    Err(FilterError::UnsupportedFormat(_))
                ),
                "{junk:?}"
            );
            assert!(matches!(
                probe(junk),
                Err(FilterError::UnsupportedFormat(_))
            ));
        }
    }

    #[test]
    fn programmatic_pipelines_are_validated() {
        let input = png(&gradient(8, 6));
        let p = Pipeline {
            ops: vec![crate::Op::Blur { sigma: f32::NAN }],
            output: crate::OutputFormat::Png,
        };
        assert!(matches!(
            run(&input, &p, &Limits::default()),
            Err(FilterError::BadSpec { step: Some(1), .. })
        ));
        let p = Pipeline {
            ops: vec![crate::Op::Noop; 3],
            output: crate::OutputFormat::Jpeg { quality: 50 },
        };
        let limits = Limits {
            max_ops: 2,
            ..Limits::default()
        };
        assert!(matches!(
            run(&input, &p, &limits),
            Err(FilterError::BadSpec { step: None, .. })
        ));
    }

    /// Every truncation and many single-bit flips of an image in each format: the result is a
    /// typed error or a decodable image, never a panic.
    #[test]
    fn damaged_inputs_give_typed_errors() {
        let img = gradient(24, 16);
        let p = spec("noop,format:png");
        let limits = Limits::default();
        for format in crate::SUPPORTED_FORMATS {
            let good = encode_as(&img, format);
            let check = |bytes: &[u8], what: &str| match run(bytes, &p, &limits) {
                Ok(out) => {
                    let back = image::load_from_memory(&out.bytes).unwrap();
                    assert_eq!(
                        back.dimensions(),
                        (out.width, out.height),
                        "{format:?} {what}"
                    );
                    true
                }
                Err(_) => false,
            };
            let step = (good.len() / 150).max(1);
            let mut truncated_errors = 0;
            for len in (0..good.len()).step_by(step) {
                if !check(&good[..len], "truncated") {
                    truncated_errors += 1;
                }
            }
            assert!(
                truncated_errors > 0,
                "{format:?}: no truncation was noticed"
            );
            for bit in (0..good.len() * 8).step_by(step * 3 + 4) {
                let mut bad = good.clone();
                bad[bit / 8] ^= 1 << (bit % 8);
                check(&bad, "bit flip");
            }
        }
    }

    #[test]
    fn truncated_png_is_a_decode_error() {
        let good = png(&gradient(24, 16));
        for len in [9, 20, 33, 40, good.len() / 2, good.len() - 20] {
            let err = run_default(&good[..len], "noop").unwrap_err();
            assert!(matches!(err, FilterError::Decode(_)), "len {len}: {err:?}");
        }
        assert!(matches!(
            run_default(&good[..4], "noop"),
            Err(FilterError::UnsupportedFormat(_))
        ));
    }
}

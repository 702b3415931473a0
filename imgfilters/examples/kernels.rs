//! Micro-benchmark of the filter kernels: the `image` crate's implementation (the reference,
//! what imgfilters used before) against the fast one imgfilters uses now, per megapixel of
//! input, on real photos; then whole jobs (decode + op + encode, same format) per image.
//!
//! Trust boundary: none; a developer tool that reads local image files (the repository's
//! `samples/` by default, or the files named on the command line) and prints a table.
//! Single-threaded, like a worker process. Speed targets are checked here, never in tests.
//!
//! ```text
//! cargo run -p imgfilters --release --example kernels [-- [--runs N] FILE...]
//! ```
//!
//! Each figure is the median of N runs (default: as many as fit in ~0.25 s, 3..=25).

use std::hint::black_box;
use std::time::{Duration, Instant};

use imgfilters::filters::{color, convolve, geometry};
use imgfilters::image::codecs::{jpeg::JpegEncoder, png::PngEncoder};
use imgfilters::image::imageops::FilterType;
use imgfilters::image::{self, DynamicImage, ImageFormat};
use imgfilters::{Limits, Pipeline, ResizeFilter};

struct Sample {
    name: String,
    bytes: Vec<u8>,
    format: ImageFormat,
    img: DynamicImage,
}

impl Sample {
    fn mp(&self) -> f64 {
        f64::from(self.img.width()) * f64::from(self.img.height()) / 1e6
    }
}

/// Median wall time of `f`, run `runs` times or adaptively.
fn median(runs: Option<usize>, mut f: impl FnMut()) -> Duration {
    let t0 = Instant::now();
    f(); // warm-up, also sizes the adaptive run count
    let one = t0.elapsed().max(Duration::from_micros(1));
    let n = runs
        .unwrap_or_else(|| (Duration::from_millis(250).as_secs_f64() / one.as_secs_f64()) as usize)
        .clamp(3, 25);
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[n / 2]
}

/// Median of a duration reported by the run itself (a `Timings` stage).
fn median_of(runs: Option<usize>, mut f: impl FnMut() -> Duration) -> Duration {
    let first = f().max(Duration::from_micros(1));
    let n = runs
        .unwrap_or_else(|| (0.25 / first.as_secs_f64()) as usize)
        .clamp(3, 25);
    let mut times: Vec<Duration> = (0..n).map(|_| f()).collect();
    times.sort();
    times[n / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn encode_image_crate(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    match format {
        ImageFormat::Jpeg => {
            let img = match img {
                DynamicImage::ImageLuma8(_) | DynamicImage::ImageRgb8(_) => img.clone(),
                DynamicImage::ImageLumaA8(_) => DynamicImage::ImageLuma8(img.to_luma8()),
                _ => DynamicImage::ImageRgb8(img.to_rgb8()),
            };
            img.write_with_encoder(JpegEncoder::new_with_quality(&mut out, 85))
                .unwrap();
        }
        _ => img.write_with_encoder(PngEncoder::new(&mut out)).unwrap(),
    }
    out
}

fn main() {
    let mut runs = None;
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--runs" {
            runs = args.next().and_then(|n| n.parse().ok());
        } else {
            files.push(a);
        }
    }
    if files.is_empty() {
        let dir = format!("{}/../samples", env!("CARGO_MANIFEST_DIR"));
        for name in [
            "cat.png",
            "coffee.png",
            "astronaut.png",
            "rocket.jpg",
            "hubble_deep_field.jpg",
            "retina.jpg",
        ] {
            files.push(format!("{dir}/{name}"));
        }
    }
    let samples: Vec<Sample> = files
        .iter()
        .map(|path| {
            let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
            let format = image::guess_format(&bytes).unwrap();
            let img = image::load_from_memory(&bytes).unwrap();
            let name = path.rsplit('/').next().unwrap_or(path).to_string();
            Sample {
                name,
                bytes,
                format,
                img,
            }
        })
        .collect();

    println!(
        "Kernels, ms per megapixel of input (median; `image` 0.25 vs imgfilters' fast path)\n"
    );
    println!(
        "{:<24} {:>22} {:>9} {:>9} {:>8}",
        "kernel", "image", "image", "fast", "speed-up"
    );
    type Kernel<'a> = (
        &'a str,
        Box<dyn Fn(&DynamicImage)>,
        Box<dyn Fn(&DynamicImage)>,
    );
    let half = |i: &DynamicImage| (i.width() / 2, i.height() / 2);
    let kernels: Vec<Kernel> = vec![
        (
            "blur sigma 2",
            Box::new(|i| drop(black_box(i.blur(2.0)))),
            Box::new(|i| drop(black_box(convolve::blur(i.clone(), 2.0)))),
        ),
        (
            "blur sigma 20",
            Box::new(|i| drop(black_box(i.blur(20.0)))),
            Box::new(|i| drop(black_box(convolve::blur(i.clone(), 20.0)))),
        ),
        (
            "sharpen sigma 1",
            Box::new(|i| drop(black_box(i.unsharpen(1.0, 0)))),
            Box::new(|i| drop(black_box(convolve::sharpen(i.clone(), 1.0, 0)))),
        ),
        (
            "resize 50% lanczos3",
            Box::new(move |i| {
                let (w, h) = half(i);
                drop(black_box(i.resize_exact(w, h, FilterType::Lanczos3)))
            }),
            Box::new(move |i| {
                let (w, h) = half(i);
                drop(black_box(geometry::resize_exact(
                    i.clone(),
                    w,
                    h,
                    ResizeFilter::Lanczos3,
                )))
            }),
        ),
        (
            "resize 50% triangle",
            Box::new(move |i| {
                let (w, h) = half(i);
                drop(black_box(i.resize_exact(w, h, FilterType::Triangle)))
            }),
            Box::new(move |i| {
                let (w, h) = half(i);
                drop(black_box(geometry::resize_exact(
                    i.clone(),
                    w,
                    h,
                    ResizeFilter::Triangle,
                )))
            }),
        ),
        (
            "resize 50% nearest",
            Box::new(move |i| {
                let (w, h) = half(i);
                drop(black_box(i.resize_exact(w, h, FilterType::Nearest)))
            }),
            Box::new(move |i| {
                let (w, h) = half(i);
                drop(black_box(geometry::resize_exact(
                    i.clone(),
                    w,
                    h,
                    ResizeFilter::Nearest,
                )))
            }),
        ),
        (
            "resize 150% lanczos3",
            Box::new(|i| {
                drop(black_box(i.resize_exact(
                    i.width() * 3 / 2,
                    i.height() * 3 / 2,
                    FilterType::Lanczos3,
                )))
            }),
            Box::new(|i| {
                drop(black_box(geometry::resize_exact(
                    i.clone(),
                    i.width() * 3 / 2,
                    i.height() * 3 / 2,
                    ResizeFilter::Lanczos3,
                )))
            }),
        ),
        (
            "thumbnail 1/5",
            Box::new(|i| drop(black_box(i.thumbnail_exact(i.width() / 5, i.height() / 5)))),
            Box::new(|i| {
                drop(black_box(geometry::thumbnail(
                    i.clone(),
                    i.width() / 5,
                    i.height() / 5,
                )))
            }),
        ),
        (
            "grayscale",
            Box::new(|i| drop(black_box(i.grayscale()))),
            Box::new(|i| drop(black_box(color::grayscale(i.clone())))),
        ),
        (
            "(clone, in fast figures)",
            Box::new(|_| ()),
            Box::new(|i| drop(black_box(i.clone()))),
        ),
    ];
    for (name, reference, fast) in &kernels {
        let (mut t_ref, mut t_fast, mut mp) = (0.0, 0.0, 0.0);
        let mut per_image = Vec::new();
        for s in &samples {
            let r = ms(median(runs, || reference(&s.img)));
            let f = ms(median(runs, || fast(&s.img)));
            per_image.push(format!("{:.1}/{:.1}", r / s.mp(), f / s.mp()));
            t_ref += r;
            t_fast += f;
            mp += s.mp();
        }
        println!(
            "{:<24} {:>22} {:>9.2} {:>9.2} {:>7.1}x",
            name,
            "",
            t_ref / mp,
            t_fast / mp,
            t_ref / t_fast.max(1e-9)
        );
        if std::env::var_os("KERNELS_VERBOSE").is_some() {
            println!("    per image (image/fast ms/MP): {}", per_image.join("  "));
        }
    }

    // Codecs: the reference encoders called directly; the fast path timed through the
    // pipeline's own stage timings (noop job), so it is exactly what a worker runs.
    println!("\nCodecs, ms per megapixel (median)\n");
    println!(
        "{:<24} {:>9} {:>9} {:>8}   sizes (image / fast)",
        "codec", "image", "fast", "speed-up"
    );
    for (label, format, gray) in [
        ("JPEG encode q85 RGB", ImageFormat::Jpeg, false),
        ("JPEG encode q85 gray", ImageFormat::Jpeg, true),
        ("PNG encode RGB", ImageFormat::Png, false),
    ] {
        let (mut t_ref, mut t_fast, mut mp, mut size_ref, mut size_fast) = (0.0, 0.0, 0.0, 0, 0);
        let spec = match format {
            ImageFormat::Jpeg => "noop,format:jpeg:85",
            _ => "noop,format:png",
        };
        let pipeline: Pipeline = spec.parse().unwrap();
        for s in &samples {
            let img = if gray {
                DynamicImage::ImageLuma8(s.img.to_luma8())
            } else {
                DynamicImage::ImageRgb8(s.img.to_rgb8())
            };
            // Lossless PNG of the same pixels as the pipeline's input; only encode is timed.
            let input = encode_image_crate(&img, ImageFormat::Png);
            t_ref += ms(median(runs, || {
                drop(black_box(encode_image_crate(&img, format)))
            }));
            t_fast += ms(median_of(runs, || {
                imgfilters::run(&input, &pipeline, &Limits::default())
                    .unwrap()
                    .timings
                    .encode
            }));
            size_ref += encode_image_crate(&img, format).len();
            size_fast += imgfilters::run(&input, &pipeline, &Limits::default())
                .unwrap()
                .bytes
                .len();
            mp += s.mp();
        }
        println!(
            "{:<24} {:>9.2} {:>9.2} {:>7.1}x   {} / {} bytes",
            label,
            t_ref / mp,
            t_fast / mp,
            t_ref / t_fast,
            size_ref,
            size_fast
        );
    }
    // Alternatives considered, for the record.
    {
        let (mut t_je, mut s_je, mut mp) = (0.0, 0, 0.0);
        for s in &samples {
            let rgb = s.img.to_rgb8();
            let (w, h) = (rgb.width() as u16, rgb.height() as u16);
            let enc = || {
                let mut out = Vec::new();
                let mut e = jpeg_encoder::Encoder::new(&mut out, 85);
                e.set_sampling_factor(jpeg_encoder::SamplingFactor::F_1_1);
                e.encode(rgb.as_raw(), w, h, jpeg_encoder::ColorType::Rgb)
                    .unwrap();
                out
            };
            t_je += ms(median(runs, || drop(black_box(enc()))));
            s_je += enc().len();
            mp += s.mp();
        }
        println!(
            "{:<24} {:>9} {:>9.2}            {} bytes (pure-Rust fallback)",
            "  (jpeg-encoder 4:4:4)",
            "",
            t_je / mp,
            s_je
        );
        #[cfg(feature = "turbojpeg")]
        {
            let (mut t, mut size) = (0.0, 0);
            for s in &samples {
                let rgb = s.img.to_rgb8();
                let enc = || {
                    let mut c = turbojpeg::Compressor::new().unwrap();
                    c.set_quality(85).unwrap();
                    c.set_subsamp(turbojpeg::Subsamp::Sub2x2).unwrap();
                    let image = turbojpeg::Image {
                        pixels: rgb.as_raw().as_slice(),
                        width: rgb.width() as usize,
                        pitch: rgb.width() as usize * 3,
                        height: rgb.height() as usize,
                        format: turbojpeg::PixelFormat::RGB,
                    };
                    c.compress_to_owned(image).unwrap().len()
                };
                t += ms(median(runs, || {
                    black_box(enc());
                }));
                size += enc();
            }
            println!(
                "{:<24} {:>9} {:>9.2}            {} bytes (not used: image never subsamples)",
                "  (libjpeg-turbo 4:2:0)",
                "",
                t / mp,
                size
            );
        }
        use image::codecs::png::{CompressionType as C, FilterType as F};
        for (label, c, f) in [
            ("  (png fast, adaptive)", C::Fast, F::Adaptive),
            ("  (png fast, paeth)", C::Fast, F::Paeth),
            ("  (png fast, up)", C::Fast, F::Up),
            ("  (png fast, sub)", C::Fast, F::Sub),
            ("  (png fast, none)", C::Fast, F::NoFilter),
            ("  (png level 1, adaptive)", C::Level(1), F::Adaptive),
            ("  (png default, adaptive)", C::Default, F::Adaptive),
        ] {
            let (mut t, mut size, mut mp) = (0.0, 0, 0.0);
            for s in &samples {
                let rgb = DynamicImage::ImageRgb8(s.img.to_rgb8());
                let enc = || {
                    let mut out = Vec::new();
                    rgb.write_with_encoder(PngEncoder::new_with_quality(&mut out, c, f))
                        .unwrap();
                    out
                };
                t += ms(median(runs, || drop(black_box(enc()))));
                size += enc().len();
                mp += s.mp();
            }
            println!(
                "{:<24} {:>9} {:>9.2}            {} bytes",
                label,
                "",
                t / mp,
                size
            );
        }
    }
    {
        let (mut t_ref, mut t_fast, mut mp) = (0.0, 0.0, 0.0);
        let pipeline: Pipeline = "noop".parse().unwrap();
        for s in &samples {
            t_ref += ms(median(runs, || {
                drop(black_box(image::load_from_memory(&s.bytes).unwrap()))
            }));
            t_fast += ms(median_of(runs, || {
                imgfilters::run(&s.bytes, &pipeline, &Limits::default())
                    .unwrap()
                    .timings
                    .decode
            }));
            mp += s.mp();
        }
        // libjpeg-turbo could decode too, but that would put C on the hostile-bytes side of
        // the trust boundary; measured here only to size the opportunity.
        #[cfg(feature = "turbojpeg")]
        {
            let (mut t_zune, mut t_turbo, mut mp_jpeg) = (0.0, 0.0, 0.0);
            for s in samples.iter().filter(|s| s.format == ImageFormat::Jpeg) {
                t_zune += ms(median(runs, || {
                    drop(black_box(image::load_from_memory(&s.bytes).unwrap()))
                }));
                t_turbo += ms(median(runs, || {
                    drop(black_box(
                        turbojpeg::decompress(&s.bytes, turbojpeg::PixelFormat::RGB).unwrap(),
                    ))
                }));
                mp_jpeg += s.mp();
            }
            if mp_jpeg > 0.0 {
                println!(
                    "{:<24} {:>9.2} {:>9.2}   (not used: C decoder on untrusted input)",
                    "  (JPEG decode: libjpeg-turbo)",
                    t_zune / mp_jpeg,
                    t_turbo / mp_jpeg
                );
            }
        }
        println!(
            "{:<24} {:>9.2} {:>9.2}   (same decoders: zune-jpeg, png; imgfilters adds limits and EXIF)",
            "decode (input format)",
            t_ref / mp,
            t_fast / mp
        );
    }

    // Whole jobs as a worker runs them: decode, op, encode in the input's format. The
    // reference is the same steps with `image` only (the pre-change pipeline).
    println!("\nWhole jobs, single-threaded (decode + op + encode, same format as the input)\n");
    println!(
        "{:<24} {:<10} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "image", "job", "MP", "image ms", "fast ms", "image/s", "fast/s"
    );
    type Job<'a> = (&'a str, &'a str, Box<dyn Fn(DynamicImage) -> DynamicImage>);
    let jobs: Vec<Job> = vec![
        ("blur σ2", "blur:2", Box::new(|i| i.blur(2.0))),
        (
            "resize 50%",
            "",
            Box::new(|i| i.resize_exact(i.width() / 2, i.height() / 2, FilterType::Lanczos3)),
        ),
        ("grayscale", "grayscale", Box::new(|i| i.grayscale())),
    ];
    let mut totals = vec![(0.0, 0.0, 0.0); jobs.len()];
    for s in &samples {
        for (j, (label, spec, reference)) in jobs.iter().enumerate() {
            let spec = if spec.is_empty() {
                format!("resize:{}x{}:exact", s.img.width() / 2, s.img.height() / 2)
            } else {
                spec.to_string()
            };
            let pipeline: Pipeline = spec.parse().unwrap();
            let t_ref = ms(median(runs, || {
                let img = image::load_from_memory(&s.bytes).unwrap();
                let out = reference(img);
                drop(black_box(encode_image_crate(&out, s.format)));
            }));
            let t_fast = ms(median(runs, || {
                drop(black_box(
                    imgfilters::run(&s.bytes, &pipeline, &Limits::default()).unwrap(),
                ));
            }));
            println!(
                "{:<24} {:<10} {:>8.2} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
                s.name,
                label,
                s.mp(),
                t_ref,
                t_fast,
                1e3 / t_ref,
                1e3 / t_fast
            );
            totals[j].0 += t_ref;
            totals[j].1 += t_fast;
            totals[j].2 += s.mp();
        }
    }
    println!("\nPer megapixel over all images (ms/MP): image -> fast");
    for ((label, _, _), (r, f, mp)) in jobs.iter().zip(&totals) {
        println!(
            "  {label:<12} {:>7.1} -> {:>6.1}  ({:.1}x)",
            r / mp,
            f / mp,
            r / f
        );
    }
}

//! Real photographs through the public API: every op, every output format.
//!
//! Trust boundary: none crossed here; the inputs are checked-in sample files (see
//! tests/data/SOURCES.md), standing in for real-world client uploads.

use imgfilters::image::{self, GenericImageView, ImageFormat};
use imgfilters::{probe, run, FilterError, Limits, Pipeline};

fn sample(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// (spec, expected output size) for an input of `w x h`.
fn cases(w: u32, h: u32) -> Vec<(String, (u32, u32))> {
    vec![
        ("noop".into(), (w, h)),
        ("blur:2".into(), (w, h)),
        ("sharpen:1.0:5".into(), (w, h)),
        ("resize:40x30".into(), fit(w, h, 40, 30)),
        ("resize:40x30:fill:catmullrom".into(), (40, 30)),
        ("resize:40x30:exact:nearest".into(), (40, 30)),
        ("resize:100x".into(), (100, (h * 100 + w / 2) / w)),
        ("thumbnail:32".into(), fit(w, h, 32, 32)),
        ("crop:10:5:30x20".into(), (30, 20)),
        ("rotate:90".into(), (h, w)),
        ("rotate:180".into(), (w, h)),
        ("rotate:270".into(), (h, w)),
        ("flip:h".into(), (w, h)),
        ("flip:v".into(), (w, h)),
        ("grayscale".into(), (w, h)),
        ("invert".into(), (w, h)),
        ("brightness:-20".into(), (w, h)),
        ("contrast:15".into(), (w, h)),
        (
            "crop:0:0:50x40,rotate:90,resize:20x20:fill,grayscale".into(),
            (20, 20),
        ),
    ]
}

fn fit(w: u32, h: u32, bw: u32, bh: u32) -> (u32, u32) {
    if bw * h <= bh * w {
        (bw, (h * bw + w / 2) / w)
    } else {
        ((w * bh + h / 2) / h, bh)
    }
}

fn check_all_ops(name: &str, format: ImageFormat, size: (u32, u32)) {
    let input = sample(name);
    let info = probe(&input).unwrap();
    assert_eq!(
        (info.format, info.width, info.height),
        (format, size.0, size.1)
    );
    for (spec, expect) in cases(size.0, size.1) {
        let pipeline: Pipeline = spec.parse().unwrap();
        let out = run(&input, &pipeline, &Limits::default())
            .unwrap_or_else(|e| panic!("{name} {spec}: {e}"));
        assert_eq!(out.format, format, "{name} {spec}");
        assert_eq!((out.width, out.height), expect, "{name} {spec}");
        let back = image::load_from_memory(&out.bytes)
            .unwrap_or_else(|e| panic!("{name} {spec}: output does not decode: {e}"));
        assert_eq!(back.dimensions(), expect, "{name} {spec}");
    }
}

#[test]
fn every_op_on_a_png_photo() {
    check_all_ops("chelsea_64x64.png", ImageFormat::Png, (64, 64));
}

#[test]
fn every_op_on_a_jpeg_photo() {
    check_all_ops("astronaut_128x128.jpg", ImageFormat::Jpeg, (128, 128));
}

#[test]
fn every_output_format_from_real_photos() {
    for name in ["chelsea_64x64.png", "astronaut_128x128.jpg"] {
        let input = sample(name);
        for (fmt, expect) in [
            ("png", ImageFormat::Png),
            ("jpeg:60", ImageFormat::Jpeg),
            ("gif", ImageFormat::Gif),
            ("webp", ImageFormat::WebP),
            ("bmp", ImageFormat::Bmp),
            ("tiff", ImageFormat::Tiff),
        ] {
            let pipeline: Pipeline = format!("thumbnail:48,format:{fmt}").parse().unwrap();
            let out = run(&input, &pipeline, &Limits::default()).unwrap();
            assert_eq!(out.format, expect);
            assert_eq!(image::guess_format(&out.bytes).unwrap(), expect);
            assert_eq!(
                image::load_from_memory(&out.bytes).unwrap().dimensions(),
                (48, 48),
                "{name} -> {fmt}"
            );
        }
    }
}

#[test]
fn grayscale_photo_really_is_gray() {
    let out = run(
        &sample("chelsea_64x64.png"),
        &"grayscale".parse().unwrap(),
        &Limits::default(),
    )
    .unwrap();
    let back = image::load_from_memory(&out.bytes).unwrap();
    assert_eq!(back.color(), image::ColorType::L8);
}

#[test]
fn real_photo_over_the_pixel_limit() {
    let limits = Limits {
        max_pixels: 128 * 127,
        ..Limits::default()
    };
    assert_eq!(
        run(
            &sample("astronaut_128x128.jpg"),
            &Pipeline::default(),
            &limits
        )
        .unwrap_err(),
        FilterError::TooManyPixels {
            width: 128,
            height: 128,
            limit: 128 * 127
        }
    );
}

//! One decode, many outputs: every variant's bytes equal the same pipeline run alone, and the
//! input is decoded once per distinct decode plan (once for a PNG; per downscale target for a
//! JPEG, whose shrink-on-load depends on it).

use imgfilters::image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use imgfilters::{prepare_variants, FilterError, Limits, Pipeline, RunOptions, Sink};

fn photo(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
        Rgb([
            (x * 255 / w) as u8,
            (y * 255 / h) as u8,
            ((x * 7 + y * 13) % 251) as u8,
        ])
    }))
}

fn encoded(img: &DynamicImage, f: ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), f)
        .unwrap();
    out
}

/// Runs the variants; returns each one's bytes (or error) by index, and the decode count.
fn variants(input: &[u8], specs: &[&str]) -> (Vec<Result<Vec<u8>, FilterError>>, usize) {
    let pipelines: Vec<Pipeline> = specs.iter().map(|s| s.parse().unwrap()).collect();
    let mut got: Vec<Option<Result<Vec<u8>, FilterError>>> = vec![None; specs.len()];
    let decodes = prepare_variants::<FilterError>(
        input,
        &pipelines,
        &Limits::default(),
        RunOptions::default(),
        |i, r| {
            assert!(got[i].is_none(), "variant {i} answered twice");
            got[i] = Some(r.and_then(|p| {
                let mut sink = Sink::with_spill(&mut [], Vec::new());
                p.encode(&mut sink)?;
                Ok(sink.into_vec())
            }));
            Ok(())
        },
    )
    .unwrap();
    (
        got.into_iter()
            .map(|g| g.expect("every variant answered"))
            .collect(),
        decodes,
    )
}

fn alone(input: &[u8], spec: &str) -> Result<Vec<u8>, FilterError> {
    imgfilters::run(input, &spec.parse().unwrap(), &Limits::default()).map(|o| o.bytes)
}

#[test]
fn jpeg_variants_are_byte_identical_to_separate_jobs_with_one_decode_per_dct_factor() {
    let jpeg = encoded(&photo(640, 480), ImageFormat::Jpeg);
    let specs = [
        "resize:160x,format:webp:80",
        "resize:320x,format:jpeg:80",
        "blur:1.5,format:png",
        "resize:160x,format:jpeg:70",
        "thumbnail:64",
        "resize:150x,format:png",
    ];
    let (got, decodes) = variants(&jpeg, &specs);
    for (spec, g) in specs.iter().zip(&got) {
        assert_eq!(g.as_ref().unwrap(), &alone(&jpeg, spec).unwrap(), "{spec}");
    }
    // Full size (blur, thumbnail), 1/2 (320 wide), 1/4: the two 160-wide variants and the
    // 150-wide one, whose own target differs but gets the same DCT factor.
    assert_eq!(decodes, 3);
}

#[test]
fn png_variants_share_one_decode_and_a_failing_variant_fails_alone() {
    let png = encoded(&photo(300, 200), ImageFormat::Png);
    let specs = [
        "resize:100x,format:webp",
        "crop:250:0:100x100",
        "grayscale,format:jpeg:90",
    ];
    let (got, decodes) = variants(&png, &specs);
    assert_eq!(decodes, 1);
    assert_eq!(got[0].as_ref().unwrap(), &alone(&png, specs[0]).unwrap());
    assert!(
        matches!(got[1], Err(FilterError::BadGeometry { .. })),
        "{:?}",
        got[1]
    );
    assert_eq!(got[2].as_ref().unwrap(), &alone(&png, specs[2]).unwrap());
}

#[test]
fn an_input_that_does_not_decode_fails_the_whole_job() {
    let pipelines: Vec<Pipeline> = ["noop", "grayscale"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let r = prepare_variants::<FilterError>(
        b"not an image",
        &pipelines,
        &Limits::default(),
        RunOptions::default(),
        |_, _| panic!("no variant is answered"),
    );
    assert!(matches!(r, Err(FilterError::UnsupportedFormat(_))), "{r:?}");
}

//! Lossy WebP and AVIF through the real server: the encoders run inside sandboxed filter
//! workers (seccomp allow-list + Landlock + memory cap) without tripping the sandbox, and the
//! result carries the right format byte; `imgclient --quality` and `-o NAME.avif` reach them.
//!
//! Trust boundary: this file plays a client; the server and imgclient are the real binaries,
//! started through the shared test kit.

use imgfilters::image::{self, DynamicImage, ImageFormat, RgbaImage};
use testkit::*;

fn ok(o: Outcome, what: &str) -> (netproto_sys::ResultInfo, Vec<u8>) {
    match o {
        Outcome::Ok { info, bytes } => (info, bytes),
        o => panic!("{what}: {o:?}"),
    }
}

#[test]
fn webp_and_avif_are_encoded_inside_the_sandbox() {
    let srv = Server::start("formats", &["--workers", "1", "--job-timeout", "30"]);
    let workers = srv.workers();
    let mut c = srv.connect();
    let coffee = sample("coffee.png");

    let (info, lossless) = ok(
        run_job(&mut c, 1, "resize:300x200,format:webp", &coffee),
        "webp",
    );
    assert_eq!(info.format, 4);
    let (info, lossy) = ok(
        run_job(&mut c, 2, "resize:300x200,format:webp:80", &coffee),
        "webp:80",
    );
    assert_eq!((info.format, info.width, info.height), (4, 300, 200));
    assert!(
        lossy.len() * 4 < lossless.len(),
        "{} vs {}",
        lossy.len(),
        lossless.len()
    );
    let back = image::load_from_memory_with_format(&lossy, ImageFormat::WebP).unwrap();
    assert_eq!((back.width(), back.height()), (300, 200));

    for (id, spec) in [
        (3, "resize:300x200,format:avif"),
        (4, "resize:300x200,format:avif:30"),
    ] {
        let (info, avif) = ok(run_job(&mut c, id, spec, &coffee), spec);
        assert_eq!(
            (info.format, info.width, info.height),
            (7, 300, 200),
            "{spec}"
        );
        assert_eq!(&avif[4..12], b"ftypavif", "{spec}");
        assert_eq!(image::guess_format(&avif).unwrap(), ImageFormat::Avif);
        assert!(avif.len() < lossy.len(), "{spec}: {} bytes", avif.len());
    }

    // An image with alpha takes ravif's second (alpha) encode, and libwebp's alpha plane.
    let mut img = RgbaImage::new(64, 48);
    for (x, y, p) in img.enumerate_pixels_mut() {
        *p = image::Rgba([(x * 4) as u8, (y * 5) as u8, 128, (x * 3) as u8]);
    }
    let mut png = Vec::new();
    DynamicImage::ImageRgba8(img)
        .write_to(&mut std::io::Cursor::new(&mut png), ImageFormat::Png)
        .unwrap();
    let (info, _) = ok(run_job(&mut c, 5, "format:avif:50", &png), "rgba avif");
    assert_eq!(info.format, 7);
    let (_, webp) = ok(run_job(&mut c, 6, "format:webp:50", &png), "rgba webp");
    assert!(image::load_from_memory(&webp).unwrap().color().has_alpha());

    // An AVIF input is refused with a typed error, not decoded.
    let (_, avif) = ok(
        run_job(&mut c, 7, "thumbnail:32,format:avif", &coffee),
        "avif",
    );
    match run_job(&mut c, 8, "noop", &avif) {
        Outcome::Error { code, .. } => {
            assert_eq!(code, netproto_sys::ErrorCode::UnsupportedFormat as u16)
        }
        o => panic!("avif input: {o:?}"),
    }

    // The same worker did all of it, under the allow-list, and nothing tripped it.
    assert_eq!(srv.workers(), workers);
    let page = srv.stats();
    assert_eq!(page.get("sandbox_seccomp"), 1);
    assert_eq!(page.get("sandbox_violations"), 0);
}

#[test]
fn imgclient_quality_and_the_avif_extension() {
    let srv = Server::start("formats-cli", &["--workers", "1", "--job-timeout", "30"]);
    let cli = ImgClient::new(&srv.addr, &srv.known_servers());
    let out = srv.dir().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let input = samples().join("coffee.png");
    let input = input.to_str().unwrap();
    let path = |name: &str| out.join(name).to_str().unwrap().to_string();

    let run = |args: &[&str]| {
        let o = cli.run(args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        // The `wrote ...` line goes to stderr (stdout may be the image).
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let said = run(&["resize", "--width", "300", input, "-o", &path("a.avif")]);
    // The format named from the result's format byte (7).
    assert!(said.contains("300x200 avif, "), "{said}");
    let a = std::fs::read(path("a.avif")).unwrap();
    assert_eq!(&a[4..12], b"ftypavif");
    run(&[
        "resize",
        "--width",
        "300",
        input,
        "-o",
        &path("b.avif"),
        "--quality",
        "20",
    ]);
    let b = std::fs::read(path("b.avif")).unwrap();
    assert!(
        b.len() < a.len(),
        "quality 20: {} vs {} bytes",
        b.len(),
        a.len()
    );

    run(&["resize", "--width", "300", input, "-o", &path("l.webp")]);
    run(&[
        "resize",
        "--width",
        "300",
        input,
        "-o",
        &path("q.webp"),
        "--quality",
        "80",
    ]);
    let (l, q) = (
        std::fs::read(path("l.webp")).unwrap(),
        std::fs::read(path("q.webp")).unwrap(),
    );
    assert!(q.len() * 4 < l.len(), "{} vs {}", q.len(), l.len());

    // --quality with a lossless output is a usage error (exit 1), before any connection.
    let o = cli.run(&["blur", input, "-o", &path("x.png"), "--quality", "80"]);
    assert_eq!(o.status.code(), Some(1));
}

//! Convolution kernels: Gaussian blur and unsharp mask.
//!
//! Trust boundary: none of its own; sigma arrives validated (`0 < sigma <= 100`), which bounds
//! the kernel width and so the CPU cost per pixel. Image sizes arrive bounded by the limits.
//!
//! 8-bit images (L8, LA8, RGB8, RGBA8) are blurred with `libblur`'s SIMD fixed-point separable
//! convolution; 16-bit images keep the `image` crate's path. The fast path is built to match
//! `image`'s `blur` rather than libblur's own Gaussian: the kernel is `image`'s (same size from
//! sigma, same f32 weights, see [`image_kernel`]), the edges are clamped as `image` clamps them,
//! both use Q0.15 fixed point with an 8-bit intermediate between the passes, and alpha is
//! blurred like any other channel (no premultiplication, as in `image`). The result is within
//! rounding of `image`'s (PSNR well above 40 dB on photos; tests/fidelity.rs).
//!
//! One deliberate difference: `image` truncates each Q0.15 weight, so its kernel sums to less
//! than 1 and large blurs darken (a uniform 255 image comes out 253 at sigma 30, 249 at 100).
//! Here the weights are rounded so that they sum to exactly 1.0 (see [`quantize_q15`]): a
//! uniform image stays exactly uniform up to sigma 30, and within 2 levels at sigma 50..100
//! (libblur's path for kernels over 61 taps loses a little precision). 16-bit images keep
//! `image`'s drift.
//!
//! Threads: libblur is always called with `ThreadingPolicy::Single`, so no thread is started
//! (a worker handles one job per process; the server parallelises across workers).

use image::{DynamicImage, ImageBuffer, Pixel};
use libblur::{BlurImage, BlurImageMut, BufferStore, EdgeMode, EdgeMode2D, FastBlurChannels};

/// Gaussian blur with standard deviation `sigma` pixels.
pub fn blur(img: DynamicImage, sigma: f32) -> DynamicImage {
    use DynamicImage as D;
    // `image` maps sigma 0 to 0.8; validation refuses 0, but a direct caller may pass it.
    let sigma = if sigma == 0.0 { 0.8 } else { sigma };
    if !(sigma.is_normal() && sigma > 0.0) {
        // `image` would panic here; leave the image alone instead.
        return img;
    }
    match img {
        D::ImageLuma8(buf) => D::ImageLuma8(blur_buffer_8(&buf, sigma)),
        D::ImageLumaA8(buf) => D::ImageLumaA8(blur_buffer_8(&buf, sigma)),
        D::ImageRgb8(buf) => D::ImageRgb8(blur_buffer_8(&buf, sigma)),
        D::ImageRgba8(buf) => D::ImageRgba8(blur_buffer_8(&buf, sigma)),
        other => other.blur(sigma),
    }
}

/// Unsharp mask: blur with `sigma`, then push each channel away from its blurred value where
/// they differ by more than `threshold`.
///
/// 8-bit images use the fast blur above and then `image`'s own per-channel rule
/// (`diff = orig - blurred; if |diff| > threshold { clamp(orig + diff) } else { orig }`).
/// `image`'s `unsharpen` blurs in f32 and rounds once, the fast blur rounds after each pass,
/// so a blurred value can differ by one step, which moves the result by at most one step
/// (and can flip the threshold test for differences exactly at the threshold).
pub fn sharpen(img: DynamicImage, sigma: f32, threshold: i32) -> DynamicImage {
    use DynamicImage as D;
    if !(sigma.is_normal() && sigma > 0.0) {
        return img;
    }
    match img {
        D::ImageLuma8(buf) => D::ImageLuma8(unsharpen_8(buf, sigma, threshold)),
        D::ImageLumaA8(buf) => D::ImageLumaA8(unsharpen_8(buf, sigma, threshold)),
        D::ImageRgb8(buf) => D::ImageRgb8(unsharpen_8(buf, sigma, threshold)),
        D::ImageRgba8(buf) => D::ImageRgba8(unsharpen_8(buf, sigma, threshold)),
        other => other.unsharpen(sigma, threshold),
    }
}

/// `image`'s kernel length for `sigma` (`GaussianBlurParameters::new_from_sigma`): about
/// 6.6 sigma, odd, at least 3. sigma <= 100 keeps it <= 665.
fn image_kernel_size(sigma: f32) -> usize {
    let size = ((((sigma - 0.8) / 0.3) + 1.0) * 2.0 + 1.0).max(3.0) as usize;
    if size.is_multiple_of(2) {
        size + 1
    } else {
        size
    }
}

/// `image`'s normalised 1-D Gaussian (`get_gaussian_kernel_1d`), computed the same way in f32
/// so that the weights agree to the last bit before quantisation.
fn image_kernel(sigma: f32) -> Vec<f32> {
    let width = image_kernel_size(sigma);
    let scale = 1.0 / ((2.0 * std::f32::consts::PI).sqrt() * sigma);
    let mean = (width / 2) as f32;
    let mut kernel: Vec<f32> = (0..width)
        .map(|x| (-0.5 * ((x as f32 - mean) / sigma).powf(2.0)).exp() * scale)
        .collect();
    let sum: f32 = kernel.iter().sum();
    if sum != 0.0 {
        let inv = 1.0 / sum;
        kernel.iter_mut().for_each(|w| *w *= inv);
    }
    kernel
}

/// Fixed-point precision of libblur's 8-bit path (`ApproxLevel for i32`), as in `image`.
const Q: u32 = 15;

/// Rounds `kernel` (odd, symmetric, summing to ~1) to Q0.15 weights that sum to exactly
/// `1 << 15` and stay symmetric, by largest remainder: floor every weight, then hand the
/// missing units to the symmetric pairs with the largest fractional parts (the centre takes
/// an odd one). Returned as f32 values `w / 32768`, which are exact, so libblur's own
/// `(w * 32768) as i32` gets these integers back unchanged. Zero taps at both ends are
/// dropped (they only cost time). Energy-preserving: a uniform image stays uniform.
fn quantize_q15(kernel: &[f32]) -> Vec<f32> {
    let one = f64::from(1u32 << Q);
    let n = kernel.len();
    let half = n / 2;
    let scaled: Vec<f64> = kernel.iter().map(|&w| f64::from(w) * one).collect();
    let mut q: Vec<i64> = scaled.iter().map(|w| w.floor() as i64).collect();
    let mut missing = (1i64 << Q) - q.iter().sum::<i64>();
    // Pairs (i, n-1-i) for i < half, largest remainder first; ties by index for determinism.
    let mut pairs: Vec<usize> = (0..half).collect();
    pairs.sort_by(|&a, &b| {
        let (ra, rb) = (scaled[a] - scaled[a].floor(), scaled[b] - scaled[b].floor());
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    for &i in pairs.iter().cycle().take(if missing > 1 { n } else { 0 }) {
        if missing < 2 {
            break;
        }
        q[i] += 1;
        q[n - 1 - i] += 1;
        missing -= 2;
    }
    q[half] += missing;
    let first = q.iter().position(|&w| w != 0).unwrap_or(half).min(half);
    q[first..n - first]
        .iter()
        .map(|&w| (w as f64 / one) as f32)
        .collect()
}

/// Blurs an 8-bit buffer of 1..=4 channels with libblur, falling back to `image` if libblur
/// refuses it (it should not: sizes are non-zero and the layout is the one it documents).
fn blur_buffer_8<P>(buf: &ImageBuffer<P, Vec<u8>>, sigma: f32) -> ImageBuffer<P, Vec<u8>>
where
    P: Pixel<Subpixel = u8> + 'static,
{
    let kernel = quantize_q15(&image_kernel(sigma));
    let (w, h) = buf.dimensions();
    let out = match P::CHANNEL_COUNT {
        1 => blur_raw::<1>(buf.as_raw(), w, h, &kernel),
        2 => blur_two_planes(buf.as_raw(), w, h, &kernel),
        3 => blur_raw::<3>(buf.as_raw(), w, h, &kernel),
        4 => blur_raw::<4>(buf.as_raw(), w, h, &kernel),
        _ => None,
    };
    match out.and_then(|v| ImageBuffer::from_raw(w, h, v)) {
        Some(out) => out,
        None => image::imageops::blur(buf, sigma),
    }
}

/// Grey + alpha: libblur has no 2-channel layout (describing the image as `Plane` with a
/// 2-sample stride works for small kernels but breaks its large-kernel path), so the two
/// channels are split into planes, blurred one by one and interleaved again. The extra
/// copies are cheap next to the convolution.
fn blur_two_planes(src: &[u8], w: u32, h: u32, kernel: &[f32]) -> Option<Vec<u8>> {
    let (luma, alpha): (Vec<u8>, Vec<u8>) = src.chunks_exact(2).map(|p| (p[0], p[1])).unzip();
    let luma = blur_raw::<1>(&luma, w, h, kernel)?;
    let alpha = blur_raw::<1>(&alpha, w, h, kernel)?;
    Some(
        luma.into_iter()
            .zip(alpha)
            .flat_map(|(l, a)| [l, a])
            .collect(),
    )
}

/// Separable convolution of an interleaved `N`-channel (1, 3 or 4) 8-bit image with `kernel`
/// both ways, edges clamped; `None` on any libblur error.
fn blur_raw<const N: usize>(src: &[u8], w: u32, h: u32, kernel: &[f32]) -> Option<Vec<u8>> {
    if w == 0 || h == 0 {
        return Some(src.to_vec());
    }
    let stride = w.checked_mul(N as u32)?;
    let channels = match N {
        1 => FastBlurChannels::Plane,
        3 => FastBlurChannels::Channels3,
        4 => FastBlurChannels::Channels4,
        _ => return None,
    };
    let src = BlurImage {
        data: std::borrow::Cow::Borrowed(src),
        width: w,
        height: h,
        stride,
        channels,
    };
    let mut out = vec![0u8; src.data.len()];
    let mut dst = BlurImageMut {
        data: BufferStore::Borrowed(&mut out),
        width: w,
        height: h,
        stride,
        channels,
    };
    libblur::filter_1d_approx::<u8, f32, i32, N>(
        &src,
        &mut dst,
        kernel,
        kernel,
        EdgeMode2D::new(EdgeMode::Clamp),
        libblur::Scalar::default(),
        libblur::ThreadingPolicy::Single,
    )
    .ok()?;
    Some(out)
}

fn unsharpen_8<P>(
    buf: ImageBuffer<P, Vec<u8>>,
    sigma: f32,
    threshold: i32,
) -> ImageBuffer<P, Vec<u8>>
where
    P: Pixel<Subpixel = u8> + 'static,
{
    // `unsharpen` does not map sigma 0 to 0.8 (it would panic); callers validated sigma > 0.
    let mut blurred = blur_buffer_8(&buf, sigma);
    for (b, &o) in blurred.iter_mut().zip(buf.iter()) {
        let diff = i32::from(o) - i32::from(*b);
        *b = if diff.abs() > threshold {
            (i32::from(o) + diff).clamp(0, 255) as u8
        } else {
            o
        };
    }
    blurred
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::apply;
    use crate::ops::Op;
    use image::{GrayImage, Luma, Rgb, RgbImage};

    fn variance(img: &GrayImage) -> f64 {
        let n = f64::from(img.width() * img.height());
        let mean = img.pixels().map(|p| f64::from(p[0])).sum::<f64>() / n;
        img.pixels()
            .map(|p| (f64::from(p[0]) - mean).powi(2))
            .sum::<f64>()
            / n
    }

    fn checkerboard() -> GrayImage {
        GrayImage::from_fn(16, 12, |x, y| {
            Luma([if (x + y) % 2 == 0 { 0 } else { 255 }])
        })
    }

    #[test]
    fn blur_of_uniform_image_stays_uniform() {
        // 8-bit images (the libblur path) stay exactly uniform: the Q0.15 weights sum to
        // exactly one (see `quantize_q15`), for every 8-bit colour type.
        let rgb = DynamicImage::ImageRgb8(RgbImage::from_pixel(9, 7, Rgb([12, 130, 240])));
        let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            9,
            7,
            image::Rgba([255, 1, 0, 77]),
        ));
        let la = DynamicImage::ImageLumaA8(image::GrayAlphaImage::from_pixel(
            5,
            11,
            image::LumaA([255, 200]),
        ));
        for img in [rgb.clone(), rgba, la] {
            for sigma in [0.5, 2.0, 10.0, 20.0, 30.0] {
                let out = apply(img.clone(), &Op::Blur { sigma }).unwrap();
                assert_eq!(out, img, "sigma {sigma}");
            }
            // Beyond 61 taps libblur's SIMD path loses a little precision: within 2 levels
            // at sigma 100 (`image`: up to 6 levels darker).
            for sigma in [50.0, 100.0] {
                let out = apply(img.clone(), &Op::Blur { sigma }).unwrap();
                for (a, b) in out.as_bytes().iter().zip(img.as_bytes()) {
                    assert!(a.abs_diff(*b) <= 2, "sigma {sigma}: {a} vs {b}");
                }
            }
        }
        // 16-bit images keep `image`'s kernel, with its known drift at large sigma (see
        // module docs): still uniform, at most 3% darker.
        let img = DynamicImage::ImageRgb16(rgb.to_rgb16());
        let want = img.as_rgb16().unwrap().get_pixel(0, 0).0;
        for sigma in [2.0, 100.0] {
            let out = apply(img.clone(), &Op::Blur { sigma }).unwrap();
            let first = out.as_rgb16().unwrap().get_pixel(0, 0).0;
            assert!(out.as_rgb16().unwrap().pixels().all(|p| p.0 == first));
            for (got, want) in first.iter().zip(want) {
                assert!(
                    *got <= want && u64::from(*got) * 100 >= u64::from(want) * 97,
                    "sigma {sigma}: {first:?}"
                );
            }
        }
    }

    #[test]
    fn kernel_matches_image_and_quantises_to_exactly_one() {
        // image's kernel sizes: 6.6 sigma, odd, at least 3.
        assert_eq!(image_kernel_size(0.5), 3);
        assert_eq!(image_kernel_size(2.0), 11);
        assert_eq!(image_kernel_size(20.0), 131);
        assert_eq!(image_kernel_size(100.0), 665);
        for sigma in [0.1f32, 0.5, 0.8, 1.0, 2.0, 3.3, 7.0, 20.0, 55.5, 100.0] {
            let k = image_kernel(sigma);
            let q = quantize_q15(&k);
            let units: Vec<i64> = q.iter().map(|&w| (w * 32768.0) as i64).collect();
            assert_eq!(units.iter().sum::<i64>(), 32768, "sigma {sigma}");
            assert!(q.len() % 2 == 1 && q.len() <= k.len(), "sigma {sigma}");
            assert!(
                units.iter().eq(units.iter().rev()),
                "symmetric, sigma {sigma}"
            );
            assert!(units.iter().all(|&u| u >= 0), "sigma {sigma}");
            // Every weight within one unit of the exact one (trimmed taps were below half).
            let trim = (k.len() - q.len()) / 2;
            for (i, &u) in units.iter().enumerate() {
                let exact = f64::from(k[i + trim]) * 32768.0;
                assert!((u as f64 - exact).abs() < 1.0, "sigma {sigma} tap {i}");
            }
        }
    }

    #[test]
    fn blur_reduces_checkerboard_variance() {
        let img = checkerboard();
        let before = variance(&img);
        let out = apply(DynamicImage::ImageLuma8(img), &Op::Blur { sigma: 2.0 }).unwrap();
        let after = variance(out.as_luma8().unwrap());
        assert!(after < before / 10.0, "{before} -> {after}");
    }

    #[test]
    fn sharpen_increases_edge_contrast() {
        // A soft vertical edge: sharpening must steepen it.
        let img = GrayImage::from_fn(16, 4, |x, _| Luma([(x * 16).min(255) as u8]));
        let before = variance(&img);
        let op = Op::Sharpen {
            sigma: 2.0,
            threshold: 0,
        };
        let out = apply(DynamicImage::ImageLuma8(img.clone()), &op).unwrap();
        assert!(variance(out.as_luma8().unwrap()) > before);
        // A threshold above every difference leaves the image untouched.
        let op = Op::Sharpen {
            sigma: 2.0,
            threshold: 255,
        };
        let out = apply(DynamicImage::ImageLuma8(img.clone()), &op).unwrap();
        assert_eq!(out.as_luma8().unwrap(), &img);
    }

    #[test]
    fn large_sigma_on_tiny_image() {
        let out = apply(DynamicImage::new_rgba8(1, 1), &Op::Blur { sigma: 100.0 }).unwrap();
        assert_eq!((out.width(), out.height()), (1, 1));
        let out = apply(
            DynamicImage::new_luma16(3, 2),
            &Op::Sharpen {
                sigma: 100.0,
                threshold: 0,
            },
        )
        .unwrap();
        assert_eq!((out.width(), out.height()), (3, 2));
    }
}

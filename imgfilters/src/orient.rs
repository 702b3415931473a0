//! EXIF orientation: turning decoded pixels upright.
//!
//! Trust boundary: the orientation tag comes from hostile metadata, but it is only ever one of
//! eight known transforms (the `image` crate maps anything else to "no transform"), so applying
//! it cannot fail. It matters for limits: a 90/270 rotation swaps width and height, so the
//! geometry pre-check must see the upright dimensions.
//!
//! For JPEG, decoded by libjpeg-turbo, which does not read EXIF, [`jpeg_orientation`] finds the
//! tag itself: a bounded walk over the marker segments before the first scan, with no
//! allocation, handing the EXIF payload to the `image` crate's parser.

use image::metadata::Orientation;
use image::DynamicImage;

/// Width and height of the image after `orientation` has been applied.
pub(crate) fn oriented_dimensions(orientation: Orientation, width: u32, height: u32) -> (u32, u32) {
    match orientation {
        Orientation::Rotate90
        | Orientation::Rotate270
        | Orientation::Rotate90FlipH
        | Orientation::Rotate270FlipH => (height, width),
        Orientation::NoTransforms
        | Orientation::Rotate180
        | Orientation::FlipHorizontal
        | Orientation::FlipVertical => (width, height),
    }
}

/// The EXIF orientation of a JPEG: from the last APP1 "Exif" segment before the first scan
/// (the one the `image` crate's decoder, zune-jpeg, also ends up with), `NoTransforms` when
/// there is none or the markers are malformed (the decoder reports those).
// Only the libjpeg-turbo decoder needs it; the tests run it either way.
#[cfg_attr(not(feature = "turbojpeg"), allow(dead_code))]
pub(crate) fn jpeg_orientation(jpeg: &[u8]) -> Orientation {
    let mut found = Orientation::NoTransforms;
    // After SOI. Every step below advances by at least one byte, so the loop ends.
    let mut i = 2;
    while let (Some(&0xFF), Some(&marker)) = (jpeg.get(i), jpeg.get(i + 1)) {
        match marker {
            // Fill byte before a marker.
            0xFF => i += 1,
            // Stand-alone markers: TEM, RSTn, SOI.
            0x01 | 0xD0..=0xD8 => i += 2,
            // SOS or EOI: the header is over.
            0xDA | 0xD9 => break,
            _ => {
                let Some(len) = jpeg.get(i + 2..i + 4) else {
                    break;
                };
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                let Some(segment) = jpeg.get(i + 4..i + 2 + len.max(2)) else {
                    break;
                };
                if marker == 0xE1 {
                    if let Some(exif) = segment.strip_prefix(b"Exif\0\0".as_slice()) {
                        if let Some(o) = Orientation::from_exif_chunk(exif) {
                            found = o;
                        }
                    }
                }
                i += 2 + len.max(2);
            }
        }
    }
    found
}

/// Makes the image upright. Since the output encoders write no metadata at all, the tag is
/// dropped with everything else, and viewers cannot apply it a second time.
pub(crate) fn make_upright(img: &mut DynamicImage, orientation: Orientation) {
    img.apply_orientation(orientation);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_orientation_is_found_in_app1() {
        use crate::testutil::{encode_as, jpeg_with_orientation};
        let jpeg = encode_as(&DynamicImage::new_rgb8(8, 6), image::ImageFormat::Jpeg);
        assert_eq!(jpeg_orientation(&jpeg), Orientation::NoTransforms);
        for (tag, o) in [
            (3, Orientation::Rotate180),
            (6, Orientation::Rotate90),
            (8, Orientation::Rotate270),
        ] {
            let tagged = jpeg_with_orientation(&jpeg, tag);
            assert_eq!(jpeg_orientation(&tagged), o);
            // Truncated anywhere, it never panics or loops.
            for n in 0..tagged.len().min(200) {
                let _ = jpeg_orientation(&tagged[..n]);
            }
        }
        assert_eq!(jpeg_orientation(b""), Orientation::NoTransforms);
        assert_eq!(
            jpeg_orientation(b"\xff\xd8\xff\xe1\x00\x00\xff\xe1"),
            Orientation::NoTransforms
        );
    }

    #[test]
    fn dimensions_swap_only_for_quarter_turns() {
        assert_eq!(oriented_dimensions(Orientation::Rotate90, 8, 6), (6, 8));
        assert_eq!(
            oriented_dimensions(Orientation::Rotate270FlipH, 8, 6),
            (6, 8)
        );
        assert_eq!(oriented_dimensions(Orientation::Rotate180, 8, 6), (8, 6));
        assert_eq!(oriented_dimensions(Orientation::FlipVertical, 8, 6), (8, 6));
    }

    #[test]
    fn make_upright_matches_oriented_dimensions() {
        let all = [
            Orientation::NoTransforms,
            Orientation::Rotate90,
            Orientation::Rotate180,
            Orientation::Rotate270,
            Orientation::FlipHorizontal,
            Orientation::FlipVertical,
            Orientation::Rotate90FlipH,
            Orientation::Rotate270FlipH,
        ];
        for o in all {
            let mut img = DynamicImage::new_rgb8(8, 6);
            make_upright(&mut img, o);
            assert_eq!(
                (img.width(), img.height()),
                oriented_dimensions(o, 8, 6),
                "{o:?}"
            );
        }
    }
}

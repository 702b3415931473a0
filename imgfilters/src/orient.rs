//! EXIF orientation: turning decoded pixels upright.
//!
//! Trust boundary: the orientation tag comes from hostile metadata, but it is only ever one of
//! eight known transforms (the `image` crate maps anything else to "no transform"), so applying
//! it cannot fail. It matters for limits: a 90/270 rotation swaps width and height, so the
//! geometry pre-check must see the upright dimensions.

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

/// Makes the image upright. Since the output encoders write no metadata at all, the tag is
/// dropped with everything else, and viewers cannot apply it a second time.
pub(crate) fn make_upright(img: &mut DynamicImage, orientation: Orientation) {
    img.apply_orientation(orientation);
}

#[cfg(test)]
mod tests {
    use super::*;

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

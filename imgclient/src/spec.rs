//! Op-spec text and output naming shared by the features: the filter commands and the load
//! tester both validate `--ops`/`--op` text with the server's own parser, and name output
//! files after the format they hold.
//!
//! Trust boundary: user input from argv; a bad spec is a usage error (exit 1) before any
//! connection is made.

use imgfilters::{OutputFormat, Pipeline};

use crate::exit::Failure;

/// Parses op-spec text exactly as the server will.
pub fn parse_spec(text: &str) -> Result<Pipeline, Failure> {
    text.parse::<Pipeline>()
        .map_err(|e| Failure::usage(format!("op spec {text:?}"), e))
}

/// The file extension written for a format.
pub fn extension(f: OutputFormat) -> Option<&'static str> {
    Some(match f {
        OutputFormat::Same => return None,
        OutputFormat::Png => "png",
        OutputFormat::Jpeg { .. } => "jpg",
        OutputFormat::Gif => "gif",
        OutputFormat::Webp | OutputFormat::WebpLossy { .. } => "webp",
        OutputFormat::Avif { .. } => "avif",
        OutputFormat::Bmp => "bmp",
        OutputFormat::Tiff => "tiff",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_as_the_server_parses_them() {
        assert_eq!(
            parse_spec("resize:800x600, blur:2 ,grayscale")
                .unwrap()
                .to_string(),
            "resize:800x600,blur:2,grayscale"
        );
        assert_eq!(
            parse_spec("frobnicate:3").unwrap_err().kind,
            crate::exit::ExitKind::Usage
        );
    }

    #[test]
    fn extensions_name_the_format() {
        assert_eq!(extension(OutputFormat::Jpeg { quality: 3 }), Some("jpg"));
        assert_eq!(extension(OutputFormat::Tiff), Some("tiff"));
        assert_eq!(
            extension(OutputFormat::WebpLossy { quality: 5 }),
            Some("webp")
        );
        assert_eq!(extension(OutputFormat::Avif { quality: 5 }), Some("avif"));
        assert_eq!(extension(OutputFormat::Same), None);
    }
}

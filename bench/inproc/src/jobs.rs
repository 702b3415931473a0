//! The benchmark's image set and jobs: which files are loaded, and the op spec each job sends
//! for each image (the same text the harness hands `imgclient bench --op`, so the in-process
//! and the end-to-end measurements run identical pipelines).

use std::path::{Path, PathBuf};

use imgfilters::image::ImageFormat;
use imgfilters::Pipeline;

/// The jobs of the suite. `Noop` (decode + encode only) is not a headline job: it calibrates
/// the service's no-op round trip against the in-process cost of the same work.
///
/// Every job but `Resize50Defaults` runs with shrink-on-load off, so that every implementation
/// does the same work (a full decode, then the whole resize). `Resize50Defaults` is the same
/// resize with each implementation at its defaults: imgfilters (like sharp) then decodes a
/// JPEG at half size by DCT scaling and resamples only the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Blur2,
    Resize50,
    Resize50Defaults,
    Gray,
    Noop,
    /// `resize:800x`: fit to 800 pixels wide, for bench/formats.py's output-format
    /// comparison (not in [`Job::ALL`], so the main suite does not run it).
    Fit800,
}

impl Job {
    pub const ALL: [Job; 5] = [
        Job::Blur2,
        Job::Resize50,
        Job::Resize50Defaults,
        Job::Gray,
        Job::Noop,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Job::Blur2 => "blur2",
            Job::Resize50 => "resize50",
            Job::Resize50Defaults => "resize50d",
            Job::Gray => "gray",
            Job::Noop => "noop",
            Job::Fit800 => "fit800",
        }
    }

    /// Whether the job runs with imgfilters' shrink-on-load (see [`Job`]); the environment
    /// variable `IMGFILTERS_SHRINK_ON_LOAD` (`0` or `1`), when set, overrides it for any job.
    pub fn shrink_on_load(self, env: Option<&str>) -> Result<bool, String> {
        match env {
            None => Ok(self == Job::Resize50Defaults),
            Some("0") => Ok(false),
            Some("1") => Ok(true),
            Some(v) => Err(format!("IMGFILTERS_SHRINK_ON_LOAD={v:?}: expected 0 or 1")),
        }
    }

    pub fn parse(s: &str) -> Option<Job> {
        Job::ALL
            .into_iter()
            .chain([Job::Fit800])
            .find(|j| j.name() == s)
    }

    /// The op spec for an image of `width x height`. No `format:` step: the output keeps the
    /// input's format, JPEG at the crate's default quality (85). A 50% resize needs the
    /// target size per image (the grammar has no percentages); `exact` with both sides gives
    /// every implementation the same output size, `w/2 x h/2` rounded down.
    pub fn spec(self, width: u32, height: u32) -> String {
        match self {
            Job::Blur2 => "blur:2".into(),
            Job::Resize50 | Job::Resize50Defaults => format!(
                "resize:{}x{}:exact:lanczos3",
                (width / 2).max(1),
                (height / 2).max(1)
            ),
            Job::Gray => "grayscale".into(),
            Job::Noop => "noop".into(),
            Job::Fit800 => "resize:800x".into(),
        }
    }
}

/// One input image, loaded into memory once.
#[derive(Debug)]
pub struct Image {
    pub name: String,
    pub bytes: Vec<u8>,
    pub format: ImageFormat,
    /// Stored size (the harness only picks images without an EXIF rotation, so this is also
    /// the upright size).
    pub width: u32,
    pub height: u32,
}

impl Image {
    pub fn megapixels(&self) -> f64 {
        f64::from(self.width) * f64::from(self.height) / 1e6
    }

    /// The job's pipeline, with `,format:FORMAT` appended when `format` is given.
    pub fn pipeline(&self, job: Job, format: Option<&str>) -> Result<Pipeline, String> {
        let mut spec = job.spec(self.width, self.height);
        if let Some(f) = format {
            spec = format!("{spec},format:{f}");
        }
        spec.parse()
            .map_err(|e| format!("{}: spec {spec:?}: {e}", self.name))
    }
}

/// Extensions `imgclient bench --dir` loads: the same files here, so both see the same set.
const EXTENSIONS: [&str; 8] = ["png", "jpg", "jpeg", "gif", "webp", "bmp", "tif", "tiff"];

/// Every image file directly inside `dir`, sorted by name, read and probed.
pub fn load_dir(dir: &Path) -> Result<Vec<Image>, String> {
    let rd = std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .map(|e| e.to_string_lossy().to_ascii_lowercase())
                    .is_some_and(|e| EXTENSIONS.contains(&e.as_str()))
        })
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(format!("{}: no image files", dir.display()));
    }
    paths
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()))?;
            let info = imgfilters::probe(&bytes).map_err(|e| format!("{}: {e}", p.display()))?;
            Ok(Image {
                name: p
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                bytes,
                format: info.format,
                width: info.width,
                height: info.height,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_halve() {
        assert_eq!(
            Job::Resize50.spec(451, 300),
            "resize:225x150:exact:lanczos3"
        );
        assert_eq!(Job::Resize50.spec(1, 1), "resize:1x1:exact:lanczos3");
        for job in Job::ALL {
            assert_eq!(Job::parse(job.name()), Some(job));
            let p: Pipeline = job.spec(640, 427).parse().unwrap();
            assert_eq!(p.output, imgfilters::OutputFormat::Same);
        }
        assert_eq!(Job::parse("blur"), None);
        assert_eq!(Job::parse("fit800"), Some(Job::Fit800));
        assert_eq!(Job::Fit800.spec(1600, 900), "resize:800x");
        assert_eq!(
            Job::Resize50Defaults.spec(451, 300),
            Job::Resize50.spec(451, 300)
        );
        assert_eq!(Job::Resize50.shrink_on_load(None), Ok(false));
        assert_eq!(Job::Resize50Defaults.shrink_on_load(None), Ok(true));
        assert_eq!(Job::Resize50Defaults.shrink_on_load(Some("0")), Ok(false));
        assert_eq!(Job::Blur2.shrink_on_load(Some("1")), Ok(true));
        assert!(Job::Blur2.shrink_on_load(Some("yes")).is_err());
    }
}

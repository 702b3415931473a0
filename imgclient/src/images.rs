//! Finding input images: which file names count as images, and the images directly inside a
//! directory. Shared by the filter commands (directory inputs) and the load tester (`--dir`).
//!
//! Trust boundary: local directories named by the user; entries are only listed and filtered
//! by extension here, never opened.

use std::fs;
use std::path::{Path, PathBuf};

use crate::exit::Failure;

/// File extensions taken from a directory input.
pub const IMAGE_EXTENSIONS: [&str; 8] = ["png", "jpg", "jpeg", "gif", "webp", "bmp", "tif", "tiff"];

pub fn has_image_extension(p: &Path) -> bool {
    p.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()))
}

/// The image files directly inside `dir`, sorted by name.
pub fn images_in(dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    let rd = fs::read_dir(dir)
        .map_err(|e| Failure::io(format!("reading directory {}", dir.display()), e))?;
    let mut files = Vec::new();
    for entry in rd {
        let entry =
            entry.map_err(|e| Failure::io(format!("reading directory {}", dir.display()), e))?;
        let p = entry.path();
        if p.is_file() && has_image_extension(&p) {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_listing_keeps_image_files_sorted() {
        let d = std::env::temp_dir().join(format!("imgclient-images-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        for f in ["b.png", "a.JPG", "notes.txt", "c.tif"] {
            fs::write(d.join(f), b"x").unwrap();
        }
        fs::create_dir(d.join("sub.png")).unwrap();
        let names: Vec<_> = images_in(&d)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.JPG", "b.png", "c.tif"]);
        assert!(!has_image_extension(Path::new("noext")));
        let e = images_in(&d.join("missing")).unwrap_err();
        assert_eq!(e.kind, crate::exit::ExitKind::Io);
        fs::remove_dir_all(&d).unwrap();
    }
}

//! Links `libnetproto.so` dynamically from this profile's `deps/` directory, and gives the
//! build tree the soname link `libnetproto.so.1` programs look for at run time.
//!
//! The libnetproto package is a normal dependency of this crate only so Cargo builds the `.so`
//! first (a cdylib is never pipelined); nothing here `use`s it, because any Rust-level use
//! would link a static copy and silently drop `NEEDED libnetproto.so.1`.
//!
//! The `.so` has the soname `libnetproto.so.1` (libnetproto/build.rs), so every binary linked
//! against it records `NEEDED libnetproto.so.1`; Cargo only ever writes `libnetproto.so`. The
//! relative links `libnetproto.so.1 -> libnetproto.so` in target/<profile>/ (where Cargo copies
//! the binaries and the `.so`) and in target/<profile>/deps/ (where it builds them, and where
//! the test binaries live) let those find it through their `$ORIGIN` runpath without
//! LD_LIBRARY_PATH. A link made before the `.so` is copied into place dangles for a moment,
//! which is harmless: nothing runs before the build ends. `make install` installs the real
//! file instead (scripts/install.sh).
//!
//! Trust boundary: none (build time only); it writes only inside the target directory.

use std::path::{Path, PathBuf};

/// The soname of libnetproto.so (libnetproto/build.rs sets it).
const SONAME: &str = "libnetproto.so.1";

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    // OUT_DIR = target/<profile>/build/netproto-sys-<hash>/out
    let profile = out.ancestors().nth(3).expect("OUT_DIR has the usual depth");
    let deps = profile.join("deps");
    println!("cargo:rustc-link-search=native={}", deps.display());
    println!("cargo:rustc-link-lib=dylib=netproto");
    // This crate's own tests run from target/<profile>/deps, where the .so is built.
    println!("cargo:rustc-link-arg-tests=-Wl,-rpath,$ORIGIN");
    for dir in [profile, deps.as_path()] {
        soname_link(dir);
        // Watched through the link: a deleted link, or a rebuilt `.so` (newer than this
        // script's last run), runs this script again, so the link is always there after a
        // build, even after `rm target/release/libnetproto.so*`.
        println!("cargo:rerun-if-changed={}", dir.join(SONAME).display());
    }
    println!("cargo:rerun-if-changed=build.rs");
}

/// Makes `dir/libnetproto.so.1` a relative link to `libnetproto.so`, unless it already is
/// one. Two builds racing on the same target directory may both try: whoever loses finds it
/// in place.
fn soname_link(dir: &Path) {
    let link = dir.join(SONAME);
    if std::fs::read_link(&link).is_ok_and(|t| t == Path::new("libnetproto.so")) {
        return;
    }
    let _ = std::fs::create_dir_all(dir);
    let _ = std::fs::remove_file(&link);
    match std::os::unix::fs::symlink("libnetproto.so", &link) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => panic!("cannot create {}: {e}", link.display()),
    }
}

//! Links `libnetproto.so` dynamically from this profile's `deps/` directory.
//!
//! The libnetproto package is a normal dependency of this crate only so Cargo builds the `.so`
//! first (a cdylib is never pipelined); nothing here `use`s it, because any Rust-level use
//! would link a static copy and silently drop `NEEDED libnetproto.so`.

use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    // OUT_DIR = target/<profile>/build/netproto-sys-<hash>/out
    let profile = out.ancestors().nth(3).expect("OUT_DIR has the usual depth");
    println!(
        "cargo:rustc-link-search=native={}",
        profile.join("deps").display()
    );
    println!("cargo:rustc-link-lib=dylib=netproto");
    // This crate's own tests run from target/<profile>/deps, where the .so is built.
    println!("cargo:rustc-link-arg-tests=-Wl,-rpath,$ORIGIN");
    println!("cargo:rerun-if-changed=build.rs");
}

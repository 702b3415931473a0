//! Link arguments of libnetproto.so: the soname `libnetproto.so.1` (what programs linked
//! against it record as NEEDED, so an ABI break can ship as `.so.2` beside it) and the version
//! script `netproto.map`, which exports the `np_*` C API and nothing else.
//!
//! Trust boundary: none (build time only). `cargo:rustc-cdylib-link-arg` applies to the cdylib
//! alone, not to the rlib the fuzz harness and the unit tests use.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libnetproto.so.1");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={dir}/netproto.map");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=netproto.map");
}

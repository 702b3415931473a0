//! Sets the run-time search path so the binary finds libnetproto.so next to itself
//! (`$ORIGIN`, where cargo copies it in target/<profile>/) or in `deps/` (where it is built),
//! without LD_LIBRARY_PATH. Link arguments do not propagate from netproto-sys, so each binary
//! sets its own. `--enable-new-dtags` makes it a RUNPATH, which LD_LIBRARY_PATH can override.

fn main() {
    println!("cargo:rustc-link-arg=-Wl,--enable-new-dtags,-rpath,$ORIGIN:$ORIGIN/deps");
    println!("cargo:rerun-if-changed=build.rs");
}

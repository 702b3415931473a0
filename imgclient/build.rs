//! Sets the run-time search path so the binary finds libnetproto.so.1 next to itself
//! (`$ORIGIN`, where cargo copies it in target/<profile>/ and netproto-sys/build.rs makes the
//! soname link), in `deps/` (where it is built), or, once installed by `make install`, in
//! `../lib` beside its `bin/` (`$ORIGIN/../lib`: PREFIX/lib, wherever PREFIX and DESTDIR put
//! it, without ldconfig), all without LD_LIBRARY_PATH. Link arguments do not propagate from
//! netproto-sys, so each binary sets its own. `--enable-new-dtags` makes it a RUNPATH, which
//! LD_LIBRARY_PATH can override.

fn main() {
    println!(
        "cargo:rustc-link-arg=-Wl,--enable-new-dtags,-rpath,$ORIGIN:$ORIGIN/deps:$ORIGIN/../lib"
    );
    println!("cargo:rerun-if-changed=build.rs");
}

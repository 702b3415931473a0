//! Sets the run-time search path of the kit's own test binary (in target/<profile>/deps, next
//! to libnetproto.so), as every binary linking netproto-sys must: link arguments do not
//! propagate from netproto-sys.

fn main() {
    println!("cargo:rustc-link-arg=-Wl,--enable-new-dtags,-rpath,$ORIGIN:$ORIGIN/deps");
    println!("cargo:rerun-if-changed=build.rs");
}

//! Writes the seed corpus (`netproto_fuzz_targets::seeds`) into `fuzz/corpus/<target>/` as
//! `seed-<name>` files: valid frames of every opcode, real handshakes, logins and jobs.
//!
//! Trust boundary: none; a developer tool. Run with `cargo run --release --bin gen_corpus` in
//! fuzz/ (no instrumentation flags: run.sh builds only the fuzz targets with those).

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let seeds = netproto_fuzz_targets::seeds();
    for s in &seeds {
        let dir = root.join(s.target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(&s.name), &s.data)?;
    }
    println!("wrote {} seeds under {}", seeds.len(), root.display());
    Ok(())
}

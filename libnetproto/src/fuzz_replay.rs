//! Replays the committed fuzz corpus and the saved crash inputs through the fuzz targets' own
//! logic (`fuzz/targets/src/targets.rs`, the code the libFuzzer binaries in `fuzz/` run,
//! included here as a test-only module), so a plain `cargo test` re-checks every input the
//! fuzzer found interesting and every crash ever fixed, on the stable toolchain and without
//! libFuzzer. Being a unit test is what lets it reach the internals without the `fuzzing`
//! feature, and costs no extra build: the harness never enters the library's normal build.
//!
//! Trust boundary: the same as the targets': the frame decoder, the message parsers and a server
//! connection facing unauthenticated bytes.
//!
//! Layout: `fuzz/corpus/<target>/*` (must exist and be non-empty, so this cannot pass by testing
//! nothing) and `fuzz/regressions/<target>-<what>` (crash inputs; the target is in the name).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// The library, under the name the harness uses (see `fuzz/targets/src/lib.rs`).
use crate as np;

#[path = "../../fuzz/targets/src/targets.rs"]
#[allow(unreachable_pub, missing_docs)]
mod fuzz_targets;

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 2] = [
    ("frame_decoder", fuzz_targets::frame_decoder),
    ("server_handshake", fuzz_targets::server_handshake),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("fuzz")
}

/// The regular files of `dir`, sorted so failures list the same way every run.
fn files(dir: &Path) -> Vec<PathBuf> {
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("fuzz input directory {} is missing: {e}", dir.display()));
    let mut v: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

/// Runs every file through `target`; returns the files that panicked (the panic message has
/// already gone to stderr through the panic hook).
fn replay(target: Target, inputs: &[PathBuf]) -> Vec<String> {
    let mut failed = Vec::new();
    for path in inputs {
        let data = std::fs::read(path).expect("readable fuzz input");
        if catch_unwind(AssertUnwindSafe(|| target(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    failed
}

fn replay_corpus(name: &str, target: Target) {
    let dir = fuzz_dir().join("corpus").join(name);
    let inputs = files(&dir);
    assert!(
        !inputs.is_empty(),
        "{} is empty: regenerate the seeds with `cargo run --release --bin gen_corpus` in fuzz/",
        dir.display()
    );
    let failed = replay(target, &inputs);
    println!("replayed {} {name} corpus inputs", inputs.len());
    assert!(failed.is_empty(), "{name} panicked on: {failed:#?}");
}

#[test]
fn frame_decoder_corpus() {
    replay_corpus("frame_decoder", fuzz_targets::frame_decoder);
}

#[test]
fn server_handshake_corpus() {
    replay_corpus("server_handshake", fuzz_targets::server_handshake);
}

#[test]
fn regressions() {
    let dir = fuzz_dir().join("regressions");
    let mut replayed = 0;
    let mut failed = Vec::new();
    for path in files(&dir) {
        let file = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if file.ends_with(".md") {
            continue;
        }
        // An input whose name matches no target would silently never run: refuse it.
        let (_, target) = TARGETS
            .iter()
            .find(|(t, _)| file.starts_with(&format!("{t}-")))
            .unwrap_or_else(|| panic!("{file}: name must start with `<target>-`"));
        failed.extend(replay(*target, std::slice::from_ref(&path)));
        replayed += 1;
    }
    println!("replayed {replayed} regression inputs");
    assert!(failed.is_empty(), "regressions panicked again: {failed:#?}");
}

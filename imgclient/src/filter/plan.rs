//! Planning a filter run: which inputs (files, directories, stdin) go to which outputs
//! (a file, stdout, or one file each in `--out-dir`).
//!
//! Trust boundary: local paths named by the user. An output may never overwrite an input, and
//! two inputs may never write the same output; both are refused before anything is read.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use imgfilters::OutputFormat;

use super::command::FilterIo;
use crate::exit::Failure;
use crate::images::images_in;
use crate::spec;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Stdin,
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    Stdout,
    File(PathBuf),
}

/// One input and where its result goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub source: Source,
    pub sink: Sink,
}

impl Task {
    /// The name used in messages.
    pub fn name(&self) -> String {
        match &self.source {
            Source::Stdin => "<stdin>".to_string(),
            Source::File(p) => p.display().to_string(),
        }
    }

    pub fn sink_name(&self) -> String {
        match &self.sink {
            Sink::Stdout => "<stdout>".to_string(),
            Sink::File(p) => p.display().to_string(),
        }
    }
}

/// Output path for `input` inside `out_dir`: same file name, extension changed when the
/// output format is fixed.
pub fn out_dir_path(out_dir: &Path, input: &Path, format: OutputFormat) -> PathBuf {
    let name = input.file_name().map(PathBuf::from).unwrap_or_default();
    let mut out = out_dir.join(name);
    if let Some(ext) = spec::extension(format) {
        out.set_extension(ext);
    }
    out
}

/// Maps the command line's inputs to tasks. `format` is the pipeline's output format (used
/// to name files in `--out-dir`).
pub fn plan(io: &FilterIo, format: OutputFormat) -> Result<Vec<Task>, Failure> {
    let stdin_count = io.inputs.iter().filter(|p| *p == Path::new("-")).count();
    if stdin_count > 0 && io.inputs.len() > 1 {
        return Err(Failure::usage("input '-'", "stdin must be the only input"));
    }
    let mut files = Vec::new();
    let mut had_dir = false;
    for p in &io.inputs {
        if p == Path::new("-") {
            continue;
        }
        if p.is_dir() {
            had_dir = true;
            let found = images_in(p)?;
            if found.is_empty() {
                log::warn!("no images in directory {}", p.display());
            }
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    let tasks: Vec<Task> = if let Some(dir) = &io.out_dir {
        if stdin_count > 0 {
            return Err(Failure::usage(
                "--out-dir",
                "cannot name an output for stdin; use -o",
            ));
        }
        files
            .into_iter()
            .map(|f| Task {
                sink: Sink::File(out_dir_path(dir, &f, format)),
                source: Source::File(f),
            })
            .collect()
    } else if let Some(out) = &io.output {
        if had_dir || files.len() > 1 {
            return Err(Failure::usage(
                "-o",
                "several inputs or a directory need --out-dir DIR instead",
            ));
        }
        let sink = if out == Path::new("-") {
            Sink::Stdout
        } else {
            Sink::File(out.clone())
        };
        let source = match files.pop() {
            Some(f) => Source::File(f),
            None => Source::Stdin,
        };
        vec![Task { source, sink }]
    } else {
        return Err(Failure::usage(
            "no output",
            "give -o OUTPUT ('-' for stdout) or --out-dir DIR",
        ));
    };
    check_outputs(&tasks)?;
    Ok(tasks)
}

/// Refuses outputs that would overwrite an input or each other.
fn check_outputs(tasks: &[Task]) -> Result<(), Failure> {
    let canon = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let inputs: HashSet<PathBuf> = tasks
        .iter()
        .filter_map(|t| match &t.source {
            Source::File(p) => Some(canon(p)),
            Source::Stdin => None,
        })
        .collect();
    let mut seen = HashSet::new();
    for t in tasks {
        if let Sink::File(p) = &t.sink {
            let c = canon(p);
            if inputs.contains(&c) {
                return Err(Failure::usage(
                    format!("output {}", p.display()),
                    "would overwrite an input",
                ));
            }
            if !seen.insert(c) {
                return Err(Failure::usage(
                    format!("output {}", p.display()),
                    "two inputs would write the same output",
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::ExitKind;
    use crate::filter::test_cli::{parse, tmpdir};
    use std::collections::HashMap;

    fn io_of(args: &[&str]) -> FilterIo {
        parse(args).unwrap().command.io().clone()
    }

    fn outputs_by_path(tasks: &[Task]) -> HashMap<PathBuf, usize> {
        tasks
            .iter()
            .enumerate()
            .filter_map(|(i, t)| match &t.sink {
                Sink::File(p) => Some((p.clone(), i)),
                Sink::Stdout => None,
            })
            .collect()
    }

    #[test]
    fn single_input_and_stdio() {
        let t = plan(
            &io_of(&["blur", "a.png", "-o", "b.jpg"]),
            OutputFormat::Same,
        )
        .unwrap();
        assert_eq!(
            t,
            vec![Task {
                source: Source::File("a.png".into()),
                sink: Sink::File("b.jpg".into())
            }]
        );
        let t = plan(&io_of(&["blur", "-", "-o", "-"]), OutputFormat::Same).unwrap();
        assert_eq!(
            t,
            vec![Task {
                source: Source::Stdin,
                sink: Sink::Stdout
            }]
        );
        assert_eq!(t[0].name(), "<stdin>");
    }

    #[test]
    fn usage_errors() {
        for args in [
            &["blur", "a.png"][..],
            &["blur", "a.png", "b.png", "-o", "c.png"],
            &["blur", "-", "a.png", "-o", "c.png"],
            &["blur", "-", "--out-dir", "d"],
            &["blur", "a.png", "-o", "a.png"],
        ] {
            let e = plan(&io_of(args), OutputFormat::Same).unwrap_err();
            assert_eq!(e.kind, ExitKind::Usage, "{args:?}");
        }
    }

    #[test]
    fn directories_expand_into_out_dir() {
        let d = tmpdir("plan");
        for f in ["b.png", "a.JPG", "notes.txt", "c.webp"] {
            fs::write(d.join(f), b"x").unwrap();
        }
        fs::create_dir(d.join("sub.png")).unwrap();
        let out = d.join("out");
        let io = io_of(&[
            "blur",
            d.to_str().unwrap(),
            "--out-dir",
            out.to_str().unwrap(),
        ]);
        let t = plan(&io, OutputFormat::Same).unwrap();
        let names: Vec<_> = t
            .iter()
            .map(|t| match &t.sink {
                Sink::File(p) => p.strip_prefix(&out).unwrap().display().to_string(),
                Sink::Stdout => "-".into(),
            })
            .collect();
        assert_eq!(names, ["a.JPG", "b.png", "c.webp"]);
        let t = plan(&io, OutputFormat::Webp).unwrap();
        // a.webp, b.webp, c.webp: distinct.
        assert_eq!(outputs_by_path(&t).len(), 3);
        assert!(outputs_by_path(&t).contains_key(&out.join("a.webp")));
        // A directory with -o is refused.
        let e = plan(
            &io_of(&["blur", d.to_str().unwrap(), "-o", "x.png"]),
            OutputFormat::Same,
        )
        .unwrap_err();
        assert_eq!(e.kind, ExitKind::Usage);
        // Writing into the input directory with the same names would overwrite inputs.
        let io = io_of(&[
            "blur",
            d.to_str().unwrap(),
            "--out-dir",
            d.to_str().unwrap(),
        ]);
        assert_eq!(
            plan(&io, OutputFormat::Same).unwrap_err().kind,
            ExitKind::Usage
        );
        // Two inputs mapping to one output name.
        fs::write(d.join("a.png"), b"x").unwrap();
        let io = io_of(&[
            "blur",
            d.to_str().unwrap(),
            "--out-dir",
            out.to_str().unwrap(),
        ]);
        assert_eq!(
            plan(&io, OutputFormat::Png).unwrap_err().kind,
            ExitKind::Usage
        );
        fs::remove_dir_all(&d).unwrap();
    }
}

//! Test-only failpoints: inputs that make a worker crash, hang, run slowly, or try from inside
//! a job what a decoder taken over by a hostile image would try. Compiled only with the
//! `failpoints` feature (`make failpoints` builds it as `imgserver-failpoints`, which only the
//! tests run; `make build` never has it) and active only when the master was started with
//! IMGSERVER_FAULT_INJECTION=1.
//!
//! Trust boundary: this is deliberately the attacker's side of the worker sandbox. An escape
//! attempt that the sandbox refuses without killing the worker fails its job with a message
//! saying so; one that succeeds says `SUCCEEDED`, which the tests treat as a hole.

use std::time::Duration;

/// Runs the failpoint `input` names, if any: `Ok` with the bytes to process (the input, or
/// what follows a marker line), or `Err` with the job's failure text.
pub fn apply(input: &[u8]) -> Result<&[u8], String> {
    if input.starts_with(b"IMGSERVER-FAULT-CRASH") {
        std::process::abort();
    }
    // A line on stderr, then a Rust panic: what a decoder bug looks like from the master.
    if input.starts_with(b"IMGSERVER-FAULT-PANIC") {
        eprintln!("IMGSERVER-FAULT-PANIC: a line on stderr before the panic");
        panic!("IMGSERVER-FAULT-PANIC: the failpoint panics");
    }
    if input.starts_with(b"IMGSERVER-FAULT-HANG") {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    // Processed normally; the worker aborts once after the output is in its slot (see
    // `crashes_after_output`), before answering, and the retry runs to the end.
    if let Some(rest) = input.strip_prefix(ENCODE_CRASH) {
        return Ok(rest);
    }
    // A slow but finite job: sleep, then process the image after the marker line.
    if let Some(rest) = input.strip_prefix(b"IMGSERVER-FAULT-SLOW\n".as_slice()) {
        std::thread::sleep(Duration::from_millis(1500));
        return Ok(rest);
    }
    // `IMGSERVER-FAULT-ESCAPE <attempt> <argument>\n`: try it, report how it went.
    if let Some(rest) = input.strip_prefix(b"IMGSERVER-FAULT-ESCAPE ".as_slice()) {
        let line = rest.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line);
        let (attempt, arg) = line.split_once(' ').unwrap_or((&line, ""));
        return Err(match escape(attempt, arg) {
            Ok(what) => format!("escape attempt {attempt} {arg}: SUCCEEDED: {what}"),
            Err(e) => format!("escape attempt {attempt} {arg}: refused: {e}"),
        });
    }
    Ok(input)
}

/// Marks an input whose first worker dies once the output is in the ring slot, before its
/// Done: the retry, on the same slot, must find the input intact.
const ENCODE_CRASH: &[u8] = b"IMGSERVER-FAULT-ENCODE-CRASH\n";

/// Whether the worker should abort after writing this input's output (and before its Done).
pub fn crashes_after_output(input: &[u8]) -> bool {
    input.starts_with(ENCODE_CRASH)
}

/// The master's pid when `arg` is `master`, else `arg` as a pid.
fn pid_of(arg: &str) -> Result<nix::unistd::Pid, String> {
    if arg == "master" {
        return Ok(nix::unistd::getppid());
    }
    arg.parse::<i32>()
        .map(nix::unistd::Pid::from_raw)
        .map_err(|e| format!("bad pid {arg:?}: {e}"))
}

/// One escape attempt: `Ok` says what it got.
fn escape(attempt: &str, arg: &str) -> Result<String, String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    match attempt {
        // Read a file (the server key, the users file).
        "read" => std::fs::read(arg)
            .map(|b| format!("read {} bytes", b.len()))
            .map_err(|e| err(&e)),
        // Create and write a file.
        "write" => std::fs::write(arg, b"written from inside a worker\n")
            .map(|()| "wrote the file".into())
            .map_err(|e| err(&e)),
        // Open a TCP connection (to the server's own port, say).
        "connect" => std::net::TcpStream::connect(arg)
            .map(|s| format!("connected to {:?}", s.peer_addr()))
            .map_err(|e| err(&e)),
        // Connect to an abstract Unix socket outside the sandbox (the master's stats socket).
        "abstract" => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(arg.as_bytes())
                .map_err(|e| err(&e))?;
            std::os::unix::net::UnixStream::connect_addr(&addr)
                .map(|_| "connected".into())
                .map_err(|e| err(&e))
        }
        // Replace the worker with another program.
        "exec" => {
            let path = std::ffi::CString::new(arg).map_err(|e| err(&e))?;
            nix::unistd::execv(&path, &[&path])
                .map(|never| match never {})
                .map_err(|e| err(&e))
        }
        // Attach to a process (the master) to read its memory. PTRACE_SEIZE makes the same
        // permission check as PTRACE_ATTACH without stopping the tracee, so a hole shows
        // as SUCCEEDED instead of a frozen master.
        "ptrace" => nix::sys::ptrace::seize(pid_of(arg)?, nix::sys::ptrace::Options::empty())
            .map(|()| "attached".into())
            .map_err(|e| err(&e)),
        // Signal a process outside the sandbox (SIGCONT: harmless if it gets through).
        "signal" => nix::sys::signal::kill(pid_of(arg)?, nix::sys::signal::Signal::SIGCONT)
            .map(|()| "signalled".into())
            .map_err(|e| err(&e)),
        other => Err(format!("unknown escape attempt {other:?}")),
    }
}

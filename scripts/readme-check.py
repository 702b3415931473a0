#!/usr/bin/env python3
"""Runs README.md's ```console blocks, in order, against the current build, and checks that each
command succeeds and prints what the README shows.

The README's walkthrough is written for a new user: a fresh home directory, the built binaries
on PATH, the repository's samples. This script gives the commands exactly that: a temporary
HOME (so the state directory and the known-servers file start empty), target/release first on
PATH, a scratch working directory holding a link to samples/, and one bash that runs every
command in turn (so `export` and background jobs carry over, as in a terminal).

What may differ from run to run is normalised on both sides before comparing: every number
(timings, sizes, ports, pids, timestamps), key fingerprints, the temporary HOME (shown as
`~`), and runs of spaces (aligned columns). A `...` line in the README stands for any number of lines. Every command must exit 0
(the README shows a failure as `cmd; echo "exit $?"`). The listening port is a free one,
given to both binaries through their environment variables, so that a server already on the
default port does not break the check.

Usage: scripts/readme-check.py [--bin DIR] [--readme README.md] [-v]
"""
import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

FENCE = re.compile(r"^```(\w*)\s*$")
FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}=?")
NUMBER = re.compile(r"\d+(\.\d+)?")
END = "__readme_check_end__"
# A command that waits for longer (a prompt, a server that never became ready) fails the check.
COMMAND_TIMEOUT_S = 120


def blocks(text):
    """The ```console blocks: a list of (line number, [(command, [expected lines])])."""
    out, cur, start, lang = [], None, 0, None
    for n, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if m and cur is None and lang is None:
            lang = m.group(1)
            if lang == "console":
                cur, start = [], n
            continue
        if m and lang is not None and not m.group(1):
            if cur is not None:
                out.append((start, cur))
            cur, lang = None, None
            continue
        if cur is None:
            continue
        if line.startswith("$ "):
            cur.append([line[2:], []])
        elif cur and cur[-1][0].endswith("\\"):
            cur[-1][0] = cur[-1][0][:-1] + "\n" + line
        elif cur:
            cur[-1][1].append(line)
        elif line.strip():
            raise SystemExit(f"README.md:{n}: console block output before any command")
    return out


def normalise(line, home):
    line = line.rstrip()
    if home:
        line = line.replace(home, "~")
    line = FINGERPRINT.sub("SHA256:<key>", line)
    line = NUMBER.sub("N", line)
    # Columns aligned to the width of their numbers shift with them.
    return " ".join(line.split())


def matches(expected, actual):
    """Whether `actual` lines fit `expected` (with `...` standing for any lines)."""
    if not expected:
        return not actual
    if expected[0] == "...":
        return any(matches(expected[1:], actual[i:]) for i in range(len(actual) + 1))
    return bool(actual) and expected[0] == actual[0] and matches(expected[1:], actual[1:])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def on_alarm(_sig, _frame):
    raise SystemExit(f"readme-check: a command ran for more than {COMMAND_TIMEOUT_S} s")


def main():
    signal.signal(signal.SIGALRM, on_alarm)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(root, "target", "release"))
    ap.add_argument("--readme", default=os.path.join(root, "README.md"))
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()

    with open(a.readme) as f:
        found = blocks(f.read())
    if not found:
        raise SystemExit("readme-check: no ```console block in " + a.readme)

    scratch = tempfile.mkdtemp(prefix="readme-check-")
    home = os.path.join(scratch, "home")
    work = os.path.join(scratch, "work")
    os.makedirs(home)
    os.makedirs(work)
    os.symlink(os.path.join(root, "samples"), os.path.join(work, "samples"))
    addr = f"127.0.0.1:{free_port()}"
    env = {
        "PATH": os.path.abspath(a.bin) + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,
        "USER": os.environ.get("USER", "root"),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "IMGSERVER_LISTEN": addr,
        "IMGSERVER_ADDR": addr,
        "IMGCLIENT_SERVER": addr,
    }
    sh = subprocess.Popen(
        ["bash", "--norc", "--noprofile"],
        cwd=work,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    failures = 0
    try:
        for start, cmds in found:
            for cmd, expected in cmds:
                # The command's own exit status, then a marker line the reader waits for.
                sh.stdin.write(f"{cmd}\nprintf '\\n{END} %s\\n' $?\n")
                sh.stdin.flush()
                actual = []
                rc = None
                signal.alarm(COMMAND_TIMEOUT_S)
                for line in sh.stdout:
                    if line.startswith(END):
                        rc = int(line.split()[-1])
                        break
                    actual.append(line.rstrip("\n"))
                signal.alarm(0)
                if rc is None:
                    raise SystemExit(f"readme-check: the shell died at `{cmd}`")
                # The marker's leading newline ends a last line that had none.
                if actual and actual[-1] == "":
                    actual.pop()
                want = [normalise(l, None) if l != "..." else l for l in expected]
                got = [normalise(l, home) for l in actual]
                ok = rc == 0 and matches(want, got)
                if a.verbose or not ok:
                    print(f"README.md:{start}: $ {cmd}  (exit {rc})")
                if not ok:
                    failures += 1
                    print("  README shows:")
                    for l in expected:
                        print("    | " + l)
                    print("  the build printed:")
                    for l in actual:
                        print("    | " + l.replace(home, "~"))
    finally:
        try:
            sh.stdin.close()
        except BrokenPipeError:
            pass
        try:
            sh.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        # Anything the walkthrough left running (it should stop its own server).
        try:
            os.killpg(sh.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(scratch, ignore_errors=True)
    n = sum(len(c) for _, c in found)
    if failures:
        print(f"readme-check: {failures} of {n} README commands did not do what README.md shows")
        return 1
    print(f"readme-check: all {n} commands of {len(found)} console blocks in README.md ran as shown")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""conftest: the live-server fixtures of the netproto tests: the real ``imgserver`` binary
on a free loopback port with a throwaway state directory and one user, waited for (its
``listening on ADDR`` line, then its workers ready, read with ``imgserver stats``) and
stopped with SIGTERM at the end; and ``imgclient --local`` as the reference for results.

Where things come from (``scripts/python-tests.sh`` sets them): ``IMGSERVER_BIN`` and
``IMGCLIENT_BIN`` (default: target/release of this checkout), ``NETPROTO_LIBRARY`` (default:
target/release/libnetproto.so), ``NETPROTO_HEADER`` (default: libnetproto/include/netproto.h).

Trust boundary: none of its own; it runs the project's binaries on loopback as the local
user. Waits are bounded and poll a condition; none sleeps in place of one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
REL = ROOT / "target" / "release"
IMGSERVER = Path(os.environ.get("IMGSERVER_BIN") or REL / "imgserver")
IMGCLIENT = Path(os.environ.get("IMGCLIENT_BIN") or REL / "imgclient")
HEADER = Path(os.environ.get("NETPROTO_HEADER") or ROOT / "libnetproto" / "include" / "netproto.h")
SAMPLES = ROOT / "samples"
# Before netproto loads the library (lazily, on first use).
os.environ.setdefault("NETPROTO_LIBRARY", str(REL / "libnetproto.so"))

USER = "pytest"
PASSWORD = "pytest-password"
START_TIMEOUT = 20.0


def wait_until(what: str, timeout: float, cond: Callable[[], bool]) -> None:
    """Polls ``cond`` until it holds; fails the test after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while True:
        if cond():
            return
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def add_user(state_dir: Path, name: str, password: str) -> None:
    subprocess.run(
        [str(IMGSERVER), "user", "add", name, "--state-dir", str(state_dir)],
        input=password + "\n",
        text=True,
        check=True,
        capture_output=True,
    )


class Server:
    """One imgserver process (and its workers, in its own process group)."""

    def __init__(self, state_dir: Path, *, workers: int = 2, listen: str = "127.0.0.1:0") -> None:
        self.state_dir = state_dir
        self.workers = workers
        self.listen = listen
        self.addr = ""
        self.log = state_dir.parent / f"{state_dir.name}.log"
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> "Server":
        if not (self.state_dir / "users").exists():
            add_user(self.state_dir, USER, PASSWORD)
        log = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [
                str(IMGSERVER),
                "--listen", self.listen,
                "--workers", str(self.workers),
                "--state-dir", str(self.state_dir),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            env={**os.environ, "RUST_LOG": "info"},
            start_new_session=True,
        )
        log.close()
        got = threading.Event()
        found: List[str] = []

        def read(out) -> None:
            # The first "listening on" line gives the address; the rest is drained so the
            # server never blocks on a full pipe.
            for raw in out:
                line = raw.decode(errors="replace").strip()
                if not found and line.startswith("listening on "):
                    found.append(line.split()[2])
                    got.set()
            got.set()

        threading.Thread(target=read, args=(self.proc.stdout,), daemon=True).start()
        if not got.wait(START_TIMEOUT) or not found:
            self.kill()
            pytest.fail(f"imgserver printed no address; log:\n{self.log_text()}")
        self.addr = found[0]
        wait_until(
            f"{self.workers} ready workers",
            START_TIMEOUT,
            lambda: self.try_stats().get("workers_ready") == self.workers,
        )
        return self

    def try_stats(self) -> Dict[str, int]:
        """The counters, read locally (``imgserver stats``: no connection is made)."""
        r = subprocess.run(
            [str(IMGSERVER), "stats", "--state-dir", str(self.state_dir)],
            capture_output=True,
            text=True,
        )
        out: Dict[str, int] = {}
        if r.returncode != 0:
            return out
        for line in r.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                out[parts[0]] = int(parts[1])
        return out

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Sends ``sig`` to the master (SIGTERM: graceful; it stops its workers) and waits
        for it to exit; one that does not within the start timeout is killed."""
        if self.proc is None or self.proc.returncode is not None:
            return
        if sig == signal.SIGKILL:
            return self.kill()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(START_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL to the master and its workers at once (the group is signalled before the
        master is reaped, so its id cannot have been reused)."""
        if self.proc is None or self.proc.returncode is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(START_TIMEOUT)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The server most tests share (2 workers)."""
    s = Server(tmp_path_factory.mktemp("srv") / "state").start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Servers of this test only (to stop, kill or replace); all stopped at its end."""
    made: List[Server] = []

    def make(name: str = "state", **kw) -> Server:
        s = Server(tmp_path / name, **kw)
        made.append(s)
        return s.start()

    try:
        yield make
    finally:
        for s in made:
            s.stop()


@pytest.fixture
def known_servers(tmp_path: Path) -> Path:
    return tmp_path / "known_servers"


@pytest.fixture
def connect(server: Server, known_servers: Path):
    """``connect(**kw)``: a netproto.Client to the shared server (closed at the test's end)."""
    import netproto

    made: List[netproto.Client] = []

    def make(**kw) -> netproto.Client:
        kw.setdefault("known_servers", known_servers)
        kw.setdefault("timeout", 30.0)
        c = netproto.Client(server.addr, kw.pop("user", USER), kw.pop("password", PASSWORD), **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


_local_cache: Dict[Tuple[str, str], bytes] = {}
_local_lock = threading.Lock()


def local_result(image: Path, spec: str) -> bytes:
    """What ``imgclient run --local`` makes of ``image`` with ``spec`` (memoised)."""
    key = (str(image), spec)
    with _local_lock:
        if key not in _local_cache:
            r = subprocess.run(
                [str(IMGCLIENT), "run", "--local", "--ops", spec, str(image), "-o", "-"],
                capture_output=True,
                check=False,
            )
            assert r.returncode == 0, f"imgclient --local {spec}: {r.stderr.decode()}"
            _local_cache[key] = r.stdout
        return _local_cache[key]

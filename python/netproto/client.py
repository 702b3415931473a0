"""client: :class:`Client`, one logged-in connection to an imgserver through libnetproto's
blocking client (``np_client_*``): connect with key pinning, login, ping, stats and
filter jobs (chunked upload, chunked result), with typed exceptions (``errors.py``).

Trust boundary: the server's answers (sizes, texts, codes) and the trust-on-first-use
decision about its key. The key check itself is libnetproto's, against the same
known-servers file imgclient uses, before any login proof leaves the process. Answers for
request ids this client is not waiting for are dropped; result data is copied out of the
library's buffers before the next call can reuse them. The password is handed to the
library once, which copies it and wipes its copy when the credentials are freed (right
after the connect); this object keeps no reference to it.

Threads: one connection per thread is the model (make a Client in each thread). A Client
shared by mistake is still safe: each call holds the Client's lock, so calls from several
threads are serialised, never interleaved. The blocking C calls release the GIL (ctypes
does for CDLL calls), so other threads run while one waits for the server.
"""

from __future__ import annotations

import ctypes
import os
import select
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, TypeVar, Union

from . import _lib
from . import errors
from .errors import ConnectionLost, NetprotoError, Timeout
from .ops import Ops

T = TypeVar("T")

#: Where the server is when neither the argument nor ``$IMGCLIENT_SERVER`` says (as imgclient).
DEFAULT_SERVER = "127.0.0.1:7878"

#: Result format byte (np_result_info.format) -> name.
FORMAT_NAMES = {1: "png", 2: "jpeg", 3: "gif", 4: "webp", 5: "bmp", 6: "tiff", 7: "avif"}

ImageInput = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]"]


@dataclass(frozen=True)
class Timings:
    """Where a job's time went on the server, in microseconds."""

    queue_us: int
    decode_us: int
    filter_us: int
    encode_us: int


@dataclass(frozen=True)
class Result:
    """A job's output: the encoded image and what the server reported with it."""

    data: bytes
    width: int
    height: int
    #: "png", "jpeg", "gif", "webp", "bmp", "tiff", "avif" (or "unknown").
    format: str
    timings: Timings

    def __repr__(self) -> str:
        return (
            f"Result({len(self.data)} bytes, {self.width}x{self.height} {self.format})"
        )


def default_known_servers(env: Optional[Dict[str, str]] = None) -> Path:
    """imgclient's known-servers file: ``$IMGCLIENT_KNOWN_SERVERS``, else
    ``$XDG_CONFIG_HOME/imgclient/known_servers`` (an absolute XDG_CONFIG_HOME only), else
    ``~/.config/imgclient/known_servers``."""
    env = os.environ if env is None else env
    if env.get("IMGCLIENT_KNOWN_SERVERS"):
        return Path(env["IMGCLIENT_KNOWN_SERVERS"])
    xdg = env.get("XDG_CONFIG_HOME", "")
    if xdg and os.path.isabs(xdg):
        base = Path(xdg)
    else:
        home = env.get("HOME", "")
        if not home:
            raise ValueError("HOME is not set: give known_servers")
        base = Path(home) / ".config"
    return base / "imgclient" / "known_servers"


def _password_from_env() -> Optional[bytes]:
    pw = os.environ.get("IMGCLIENT_PASSWORD")
    if pw:
        return pw.encode()
    path = os.environ.get("IMGCLIENT_PASSWORD_FILE")
    if path:
        # The first line, as imgclient reads it: only the line end is dropped.
        text = Path(path).read_bytes()
        line = text.split(b"\n", 1)[0]
        return line[:-1] if line.endswith(b"\r") else line
    return None


def _ms(seconds: float) -> int:
    return max(1, min(int(seconds * 1000), 0xFFFFFFFF))


def _close_handle(lib: ctypes.CDLL, handle: int) -> None:
    # Run by close() or, for a Client never closed, by the garbage collector / interpreter
    # exit (weakref.finalize): either way exactly once per handle.
    lib.np_client_close(handle)


class Client:
    """A connection to an imgserver, logged in as ``user``.

    ``Client(server, user, password, *, known_servers=None, timeout=30.0)`` connects to
    ``server`` (``"HOST:PORT"``), checks the server's key against the known-servers file
    (the first contact pins it, as imgclient does; a different key raises
    :class:`~netproto.KeyMismatch` before any login), and logs in. Omitted arguments come
    from the environment, as for imgclient: ``IMGCLIENT_SERVER`` (else 127.0.0.1:7878),
    ``IMGCLIENT_USER`` (else ``$USER``), ``IMGCLIENT_PASSWORD`` or the first line of the
    file ``IMGCLIENT_PASSWORD_FILE``, and ``IMGCLIENT_KNOWN_SERVERS`` (else imgclient's
    default, :func:`default_known_servers`).

    ``timeout`` (seconds) bounds the connect (TCP, handshake, login) and each request: a
    ping, a stats request, or a job from its upload to its last result byte. ``heartbeat``
    and ``dead_after`` are the connection's own timers (a PING after that long without
    traffic; give the server up after that long without a frame).

    Use it as a context manager (``with Client(...) as c:``) or call :meth:`close`; a
    Client that is garbage-collected unclosed is closed then. Not meant to be shared
    between threads (see the module docs): one Client per thread.
    """

    def __init__(
        self,
        server: Optional[str] = None,
        user: Optional[str] = None,
        password: Union[str, bytes, None] = None,
        *,
        known_servers: Union[str, "os.PathLike[str]", None] = None,
        timeout: float = 30.0,
        heartbeat: float = 5.0,
        dead_after: float = 20.0,
    ) -> None:
        if server is None:
            server = os.environ.get("IMGCLIENT_SERVER") or DEFAULT_SERVER
        if "," in server:
            raise ValueError(
                f"server {server!r}: one HOST:PORT (imgclient's failover lists are not supported)"
            )
        if user is None:
            user = os.environ.get("IMGCLIENT_USER") or os.environ.get("USER")
            if not user:
                raise ValueError("no user: give user, or set IMGCLIENT_USER")
        if password is None:
            pw = _password_from_env()
            if pw is None:
                raise ValueError(
                    "no password: give password, or set IMGCLIENT_PASSWORD or IMGCLIENT_PASSWORD_FILE"
                )
        else:
            pw = password.encode() if isinstance(password, str) else bytes(password)
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        ks = Path(known_servers) if known_servers is not None else default_known_servers()

        self.server: str = server
        self.user: str = user
        self.known_servers: Path = ks
        self.timeout: float = timeout
        #: Set when the server announced it is stopping (SHUTDOWN): grace period in seconds.
        self.shutdown_grace: Optional[float] = None
        self._lock = threading.Lock()
        self._next_id = 1
        self._handle: Optional[int] = None
        self._closed_why = "the client is closed"

        lib = _lib.lib()
        self._lib = lib
        cfg = _lib.config_p()
        pw_buf = ctypes.create_string_buffer(pw, len(pw))
        st = lib.np_client_config_new(user.encode(), pw_buf, len(pw), ctypes.byref(cfg))
        ctypes.memset(pw_buf, 0, len(pw))
        del pw_buf
        if st != _lib.NP_OK:
            raise errors.from_status(st, what=f"user {user!r}")
        try:
            st = lib.np_client_config_set_timers(
                cfg, _ms(heartbeat) if heartbeat else 0, _ms(dead_after) if dead_after else 0
            )
            if st != _lib.NP_OK:
                raise errors.from_status(st, what="connection timers")
            handle = _lib.client_p()
            new = ctypes.c_bool(False)
            st = lib.np_client_connect(
                server.encode(),
                cfg,
                os.fsencode(ks),
                _ms(timeout),
                ctypes.byref(handle),
                ctypes.byref(new),
            )
            if st != _lib.NP_OK:
                raise errors.from_status(st, connecting=True, what=f"connecting to {server}")
        finally:
            # The connection keeps its own reference; this wipes our copy of the password.
            lib.np_client_config_free(cfg)
        self._handle = handle.value
        self._finalizer = weakref.finalize(self, _close_handle, lib, handle.value)
        key = (ctypes.c_uint8 * 32)()
        lib.np_client_server_key(self._handle, key)
        #: The server's static public key (32 bytes).
        self.server_key: bytes = bytes(key)
        #: Whether this connection pinned the server's key (first contact).
        self.new_server: bool = bool(new.value)

    # -- lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        """Sends BYE, closes the connection and frees the handle. Idempotent."""
        with self._lock:
            self._drop("the client is closed")

    def _drop(self, why: str) -> None:
        if self._handle is not None:
            self._handle = None
            self._closed_why = why
            self._finalizer()

    @property
    def closed(self) -> bool:
        """Whether the connection is closed (by :meth:`close` or because it broke)."""
        return self._handle is None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<netproto.Client {self.user}@{self.server} {state}>"

    @property
    def fingerprint(self) -> str:
        """The server key's fingerprint (``SHA256:…``), as imgserver logs it."""
        return _lib.fingerprint(self.server_key)

    # -- plumbing -------------------------------------------------------------------------

    def _live(self) -> int:
        if self._handle is None:
            raise ConnectionLost(self._closed_why, name="NP_CLOSED", retryable=True)
        return self._handle

    def _fail(self, status: int, what: str) -> NetprotoError:
        """The exception for a failed call; anything but an argument error or a wait that
        merely ran out leaves the connection in an unknown state, so it is closed."""
        err = errors.from_status(status, what=what)
        if status not in (100, 101, 102):
            self._drop(f"the connection is closed after: {err}")
        return err

    def _check(self, status: int, what: str) -> None:
        if status != _lib.NP_OK:
            raise self._fail(status, what)

    def _new_id(self) -> int:
        i = self._next_id
        self._next_id += 1
        return i

    def _event(self, deadline: float, what: str) -> _lib.Event:
        """The next event, waiting no later than ``deadline`` (time.monotonic)."""
        handle = self._live()
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout(f"{what}: no answer within {self.timeout:g} s", name="NP_TIMEOUT", retryable=True)
        ev = _lib.Event()
        st = self._lib.np_client_next_event(handle, _ms(left), ctypes.byref(ev))
        if st == _lib.NP_TIMEOUT:
            # The session is unharmed; a late answer for this request is dropped when it comes.
            raise Timeout(f"{what}: no answer within {self.timeout:g} s", name="NP_TIMEOUT", retryable=True, status=st)
        self._check(st, what)
        return ev

    def _connection_event(self, ev: _lib.Event) -> None:
        """Handles the events that concern the connection rather than one request."""
        if ev.kind == _lib.EV_SHUTDOWN:
            self.shutdown_grace = ev.code / 1000.0
        elif ev.kind == _lib.EV_BYE:
            self._drop("the server closed the session")
            raise ConnectionLost("the server closed the session (BYE)", name="BYE", retryable=True)
        elif ev.kind == _lib.EV_ERROR and ev.request_id == 0:
            err = errors.from_wire(ev.code, _lib.event_text(ev))
            self._drop(f"the server closed the connection: {err}")
            raise err
        # Anything else (PINGs, already answered; heartbeat PONGs; answers for requests
        # given up on) needs nothing.

    def _wait_for(self, want: Callable[[_lib.Event], Optional[T]], what: str) -> T:
        deadline = time.monotonic() + self.timeout
        while True:
            ev = self._event(deadline, what)
            got = want(ev)
            if got is not None:
                return got
            self._connection_event(ev)

    def _readable(self) -> bool:
        fd = self._lib.np_client_fd(self._live())
        if fd < 0:
            return False
        r, _, _ = select.select([fd], [], [], 0)
        return bool(r)

    # -- requests -------------------------------------------------------------------------

    def ping(self) -> float:
        """Sends a PING and waits for its PONG; returns the round trip in seconds."""
        with self._lock:
            handle = self._live()
            rid = self._new_id()
            payload = b"netproto-py %d" % rid
            buf = ctypes.create_string_buffer(payload, len(payload))
            start = time.perf_counter()
            self._check(
                self._lib.np_client_send_ping(handle, rid, buf, len(payload), _ms(self.timeout)),
                "ping",
            )

            def pong(ev: _lib.Event) -> Optional[float]:
                if ev.kind == _lib.EV_PONG and ev.request_id == rid and _lib.event_data(ev) == payload:
                    return time.perf_counter() - start
                if ev.kind == _lib.EV_ERROR and ev.request_id == rid:
                    raise errors.from_wire(ev.code, _lib.event_text(ev))
                return None

            return self._wait_for(pong, "ping")

    def stats(self) -> Dict[str, int]:
        """The server's counters (name -> value), as ``imgclient stats`` shows them."""
        with self._lock:
            handle = self._live()
            rid = self._new_id()
            self._check(
                self._lib.np_client_send_stats_request(handle, rid, _ms(self.timeout)), "stats"
            )

            def reply(ev: _lib.Event) -> Optional[Dict[str, int]]:
                if ev.kind == _lib.EV_STATS and ev.request_id == rid:
                    return _parse_stats(self._lib, _lib.event_data(ev))
                if ev.kind == _lib.EV_ERROR and ev.request_id == rid:
                    raise errors.from_wire(ev.code, _lib.event_text(ev))
                return None

            return self._wait_for(reply, "stats")

    def submit(self, data: ImageInput, ops: Union[str, Ops] = "") -> Result:
        """Runs one filter job: ``data`` (the image bytes, or a path to read them from)
        through ``ops`` (op-spec text or an :class:`Ops`); returns the :class:`Result`.

        A refusal raises the matching :class:`~netproto.NetprotoError` subclass
        (:class:`~netproto.BadSpecError` with the server's text, ``BadImageError``,
        ``BusyError`` with ``retry_after``, ...); the connection stays usable after those.
        Nothing is retried here: check ``err.retryable`` / ``err.retry_after``.
        """
        spec = self._spec_bytes(str(ops))
        buf, base, n = _buffer(data)
        with self._lock:
            return self._run(spec, buf, base, n, 0)[0]

    def submit_variants(
        self, data: ImageInput, variants: Sequence[Union[str, Ops]]
    ) -> List[Union[Result, NetprotoError]]:
        """Runs one multi-output job: ``data`` decoded once on the server and put through
        each of ``variants`` (2 to 8 op specs); returns one entry per variant, in order: its
        :class:`Result`, or the error that variant alone failed with (for example a
        :class:`~netproto.NetprotoError` for BAD_GEOMETRY). Each result is byte-identical to
        :meth:`submit` with that spec.

        A failure of the request itself raises, as :meth:`submit` does (an image that does not
        decode, a bad spec, BUSY, ...); a server without multi-output jobs (protocol 1.1)
        raises :class:`~netproto.NotSupported` and closes the connection.
        """
        specs = [str(v) for v in variants]
        if not 2 <= len(specs) <= _lib.NP_MAX_VARIANTS:
            raise ValueError(f"2 to {_lib.NP_MAX_VARIANTS} variants, not {len(specs)}")
        if any(";" in s for s in specs):
            raise ValueError("an op spec of a variant contains ';'")
        spec = self._spec_bytes(";".join(specs))
        buf, base, n = _buffer(data)
        with self._lock:
            return self._run(spec, buf, base, n, len(specs))

    @staticmethod
    def _spec_bytes(text: str) -> bytes:
        spec = text.encode("utf-8")
        if len(spec) > _lib.NP_MAX_SPEC_LEN:
            raise ValueError(f"op spec is {len(spec)} bytes; at most {_lib.NP_MAX_SPEC_LEN}")
        if b"\0" in spec:
            raise ValueError("op spec contains a NUL character")
        return spec

    def _run(self, spec: bytes, buf: ctypes.Array, base: int, n: int, variants: int) -> List:
        """Uploads one job (``variants`` 0: a single job) and collects its answer: a
        one-element list for a single job, one entry per variant for a multi-output job."""
        handle = self._live()
        rid = self._new_id()
        ms = _ms(self.timeout)
        chunk = _lib.NP_MAX_CHUNK_DATA
        first = min(n, chunk)
        send = self._lib.np_client_send_job_multi if variants else self._lib.np_client_send_job
        self._check(send(handle, rid, spec, n, base, first, first == n, ms), "sending the job")
        want = max(variants, 1)
        answers: Dict[int, Union[Result, NetprotoError]] = {}
        # The stream being received: (index, info, [chunks]).
        stream: Dict[str, object] = {}
        kinds = (
            _lib.EV_JOB_RESULT,
            _lib.EV_VARIANT_RESULT,
            _lib.EV_RESULT_DATA,
            _lib.EV_VARIANT_ERROR,
            _lib.EV_ERROR,
            _lib.EV_BUSY,
        )

        def answer(ev: _lib.Event) -> Optional[List]:
            if ev.request_id != rid or ev.kind not in kinds:
                return None
            if ev.kind == _lib.EV_ERROR:
                raise errors.from_wire(ev.code, _lib.event_text(ev))
            if ev.kind == _lib.EV_BUSY:
                raise errors.busy(ev.code)
            if ev.kind == _lib.EV_VARIANT_ERROR:
                answers[ev.variant] = errors.from_wire(ev.code, _lib.event_text(ev))
            else:
                if ev.kind in (_lib.EV_JOB_RESULT, _lib.EV_VARIANT_RESULT):
                    i = ev.info
                    stream["index"] = ev.variant if ev.kind == _lib.EV_VARIANT_RESULT else 0
                    stream["info"] = (i.width, i.height, i.format, i.queue_us, i.decode_us, i.filter_us, i.encode_us)
                    stream["parts"] = []
                stream["parts"].append(_lib.event_data(ev))  # type: ignore[union-attr]
                if not ev.last:
                    return None
                w, h, fmt, q, d, f, e = stream["info"]  # type: ignore[misc]
                answers[stream["index"]] = Result(  # type: ignore[index]
                    data=b"".join(stream["parts"]),  # type: ignore[arg-type]
                    width=w,
                    height=h,
                    format=FORMAT_NAMES.get(fmt, "unknown"),
                    timings=Timings(q, d, f, e),
                )
            if len(answers) < want:
                return None
            return [answers[k] for k in range(want)]

        sent = first
        while sent < n:
            # Take in whatever has arrived (a refusal stops the upload: the server drops the
            # rest anyway), so the server never waits for us to read while we write.
            while self._readable():
                try:
                    ev = self._event(time.monotonic() + 0.005, "sending the job")
                except Timeout:
                    break  # only part of a frame so far
                if answer(ev) is None:
                    self._connection_event(ev)
            step = min(chunk, n - sent)
            self._check(
                self._lib.np_client_send_job_data(
                    handle, rid, base + sent, step, sent + step == n, ms
                ),
                "sending the job",
            )
            sent += step
        return self._wait_for(answer, "waiting for the result")

    def submit_file(
        self,
        path: Union[str, "os.PathLike[str]"],
        ops: Union[str, Ops],
        out_path: Union[str, "os.PathLike[str]"],
    ) -> Result:
        """:meth:`submit` the file ``path`` and write the result to ``out_path``."""
        result = self.submit(Path(path), ops)
        Path(out_path).write_bytes(result.data)
        return result


def _buffer(data: ImageInput) -> Tuple[ctypes.Array, int, int]:
    """One copy of the input into memory the library can read (chunks are addresses into it):
    the buffer, its address and the input's length."""
    if isinstance(data, (str, os.PathLike)):
        data = Path(data).read_bytes()
    elif not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes or a path, not {type(data).__name__}")
    n = len(data)
    buf = (ctypes.c_uint8 * max(n, 1)).from_buffer_copy(bytes(data) if n else b"\0")
    return buf, ctypes.addressof(buf), n


def _parse_stats(lib: ctypes.CDLL, body: bytes) -> Dict[str, int]:
    out: Dict[str, int] = {}
    raw = ctypes.create_string_buffer(body, max(len(body), 1))
    off = ctypes.c_size_t(0)
    name = ctypes.create_string_buffer(256)
    value = ctypes.c_uint64(0)
    while (
        lib.np_stats_next(raw, len(body), ctypes.byref(off), name, len(name), ctypes.byref(value))
        == _lib.NP_OK
    ):
        out[name.value.decode("utf-8", "replace")] = value.value
    return out

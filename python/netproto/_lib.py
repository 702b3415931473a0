"""_lib: loads libnetproto.so and declares the part of its C ABI (include/netproto.h) this
package calls, with ctypes: the blocking client (``np_client_*``), credentials, events,
stats and the error helpers. Nothing else in the package touches ctypes pointers.

Trust boundary: the shared library itself. Whatever file ``NETPROTO_LIBRARY`` names is
loaded into this process and runs with its rights, so it is taken only from the
environment of the program (never from a server or a config file). The structures below
mirror the header byte for byte; ``tests/test_error_table.py`` checks the numbers.

Loading is lazy (first use, under a lock): ``import netproto`` works without the library,
so the op-spec builder and the exception classes are usable anywhere, and a missing
library is reported by :class:`LibraryNotFound` when a client is first made.
"""

from __future__ import annotations

import ctypes
import os
import threading
from ctypes import (
    POINTER,
    Structure,
    c_bool,
    c_char,
    c_char_p,
    c_int32,
    c_size_t,
    c_uint8,
    c_uint16,
    c_uint32,
    c_uint64,
    c_void_p,
)
from typing import Optional

#: The environment variable naming the library file to load (a path).
ENV_VAR = "NETPROTO_LIBRARY"
#: What is loaded from the standard library search path otherwise (the installed SONAME).
SONAME = "libnetproto.so.1"

# np_status values this package acts on (netproto.h, enum np_status; PROTOCOL.md 13).
NP_OK = 0
NP_NO_EVENT = 1
NP_TIMEOUT = 4
# Largest data payload of one JOB frame, op-spec text, PING payload (netproto.h #defines).
NP_MAX_CHUNK_DATA = 65536
NP_MAX_SPEC_LEN = 1024
NP_MAX_PING_PAYLOAD = 256
# Most op specs in one multi-output job (netproto.h NP_MAX_VARIANTS).
NP_MAX_VARIANTS = 8

# np_event_kind (netproto.h): the kinds a client sees.
EV_SERVER_KEY = 1
EV_READY = 2
EV_JOB_RESULT = 6
EV_RESULT_DATA = 7
EV_ERROR = 8
EV_BUSY = 9
EV_PING = 10
EV_PONG = 11
EV_STATS = 13
EV_SHUTDOWN = 14
EV_BYE = 15
EV_DISCARDED = 17
EV_VARIANT_RESULT = 20
EV_VARIANT_ERROR = 21


class LibraryNotFound(ImportError):
    """libnetproto could not be loaded: neither ``$NETPROTO_LIBRARY`` nor
    ``libnetproto.so.1`` on the library search path gave a usable library."""


class ResultInfo(Structure):
    """np_result_info: what the server reports with a job result."""

    _fields_ = [
        ("total_len", c_uint64),
        ("width", c_uint32),
        ("height", c_uint32),
        ("format", c_uint8),
        ("queue_us", c_uint32),
        ("decode_us", c_uint32),
        ("filter_us", c_uint32),
        ("encode_us", c_uint32),
    ]


class Event(Structure):
    """np_event: one event; its pointers live until the next call on the client handle,
    so callers copy ``data``/``text`` out at once (:func:`event_data`, :func:`event_text`)."""

    _fields_ = [
        ("kind", c_uint32),
        ("request_id", c_uint64),
        ("code", c_uint32),
        ("last", c_bool),
        ("variant", c_uint8),
        ("total_len", c_uint64),
        ("data", c_void_p),
        ("data_len", c_size_t),
        ("text", c_void_p),
        ("text_len", c_size_t),
        ("info", ResultInfo),
        ("server_key", c_uint8 * 32),
    ]


def event_data(ev: Event) -> bytes:
    """A copy of the event's ``data`` bytes (empty for NULL)."""
    if not ev.data or ev.data_len == 0:
        return b""
    return ctypes.string_at(ev.data, ev.data_len)


def event_text(ev: Event) -> str:
    """A copy of the event's ``text`` (UTF-8, invalid bytes replaced)."""
    if not ev.text or ev.text_len == 0:
        return ""
    return ctypes.string_at(ev.text, ev.text_len).decode("utf-8", "replace")


# Opaque handles.
client_p = c_void_p
config_p = c_void_p

# name: (restype, argtypes). Data pointers are c_void_p so callers pass an address into a
# buffer they keep alive for the call (no per-chunk copies).
_PROTOTYPES = {
    "np_version": (c_char_p, []),
    "np_status_str": (c_char_p, [c_uint32]),
    "np_last_error": (c_uint32, [POINTER(c_char), c_size_t, POINTER(c_size_t)]),
    "np_last_error_code": (c_uint16, []),
    "np_last_error_retry_after_ms": (c_uint32, []),
    "np_error_code_name": (c_char_p, [c_uint16]),
    "np_error_code_is_retryable": (c_bool, [c_uint16]),
    "np_error_text_retry_after": (c_uint32, [c_void_p, c_size_t, POINTER(c_uint32)]),
    "np_key_fingerprint": (c_uint32, [c_void_p, POINTER(c_char), c_size_t, POINTER(c_size_t)]),
    "np_client_config_new": (c_uint32, [c_char_p, c_void_p, c_size_t, POINTER(config_p)]),
    "np_client_config_set_timers": (c_uint32, [config_p, c_uint32, c_uint32]),
    "np_client_config_free": (None, [config_p]),
    "np_client_connect": (
        c_uint32,
        [c_char_p, config_p, c_char_p, c_uint32, POINTER(client_p), POINTER(c_bool)],
    ),
    "np_client_send_job": (
        c_uint32,
        [client_p, c_uint64, c_char_p, c_uint64, c_void_p, c_size_t, c_bool, c_uint32],
    ),
    "np_client_send_job_multi": (
        c_uint32,
        [client_p, c_uint64, c_char_p, c_uint64, c_void_p, c_size_t, c_bool, c_uint32],
    ),
    "np_client_send_job_data": (
        c_uint32,
        [client_p, c_uint64, c_void_p, c_size_t, c_bool, c_uint32],
    ),
    "np_client_send_ping": (c_uint32, [client_p, c_uint64, c_void_p, c_size_t, c_uint32]),
    "np_client_send_stats_request": (c_uint32, [client_p, c_uint64, c_uint32]),
    "np_client_next_event": (c_uint32, [client_p, c_uint32, POINTER(Event)]),
    "np_client_server_key": (c_uint32, [client_p, c_void_p]),
    "np_client_fd": (c_int32, [client_p]),
    "np_client_close": (None, [client_p]),
    "np_stats_next": (
        c_uint32,
        [c_void_p, c_size_t, POINTER(c_size_t), POINTER(c_char), c_size_t, POINTER(c_uint64)],
    ),
}

_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None


def _declare(lib: ctypes.CDLL, what: str) -> ctypes.CDLL:
    for name, (restype, argtypes) in _PROTOTYPES.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            raise LibraryNotFound(
                f"{what} is not a usable libnetproto: it has no {name}()"
            ) from None
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


def _load() -> ctypes.CDLL:
    path = os.environ.get(ENV_VAR)
    if path:
        # Named explicitly: a failure is reported, never papered over by loading another copy.
        try:
            return _declare(ctypes.CDLL(path), path)
        except OSError as e:
            raise LibraryNotFound(
                f"cannot load libnetproto from ${ENV_VAR}={path}: {e}"
            ) from None
    try:
        return _declare(ctypes.CDLL(SONAME), SONAME)
    except OSError as e:
        raise LibraryNotFound(
            f"cannot load libnetproto: ${ENV_VAR} is not set and {SONAME} is not on the "
            f"library search path ({e}); install the library (make install) or set "
            f"{ENV_VAR} to the path of libnetproto.so"
        ) from None


def lib() -> ctypes.CDLL:
    """The loaded library (loaded on first call; later calls return the same one)."""
    global _lib
    if _lib is None:
        with _lock:
            if _lib is None:
                _lib = _load()
    return _lib


def version() -> str:
    """The library's version string, e.g. ``"0.1.0"``."""
    return lib().np_version().decode()


def status_str(status: int) -> str:
    """The library's description of an ``np_status`` number."""
    return lib().np_status_str(status).decode()


def last_error() -> str:
    """The detailed message of the last failure on this thread (read right after the call:
    the library keeps it per thread, and ctypes makes the call on the calling thread)."""
    buf = ctypes.create_string_buffer(2048)
    n = c_size_t(0)
    if lib().np_last_error(buf, len(buf), ctypes.byref(n)) != NP_OK:
        return ""
    return buf.raw[: n.value].decode("utf-8", "replace")


def error_code_name(code: int) -> Optional[str]:
    """The protocol name of a wire error code, or None if the library does not know it."""
    if not 0 <= code <= 0xFFFF:
        return None
    name = lib().np_error_code_name(code)
    return name.decode() if name else None


def error_code_is_retryable(code: int) -> bool:
    """Whether a request refused with this wire code may succeed if sent again later."""
    if not 0 <= code <= 0xFFFF:
        return False
    return bool(lib().np_error_code_is_retryable(code))


def error_text_retry_after_ms(text: bytes) -> Optional[int]:
    """The ``retry-after-ms=N;`` delay an ERROR text (RATE_LIMITED) carries, or None."""
    ms = c_uint32(0)
    buf = ctypes.create_string_buffer(text, len(text))
    if lib().np_error_text_retry_after(buf, len(text), ctypes.byref(ms)) != NP_OK:
        return None
    return ms.value


def fingerprint(key: bytes) -> str:
    """The SSH-style fingerprint (``SHA256:…``) of a 32-byte public key."""
    if len(key) != 32:
        raise ValueError("a server key is 32 bytes")
    k = ctypes.create_string_buffer(key, 32)
    out = ctypes.create_string_buffer(128)
    n = c_size_t(0)
    if lib().np_key_fingerprint(k, out, len(out), ctypes.byref(n)) != NP_OK:
        raise ValueError(last_error())
    return out.raw[: n.value].decode()

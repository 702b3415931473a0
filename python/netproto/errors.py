"""errors: the exceptions of the netproto package, and the one table that maps the
protocol's wire error codes (docs/PROTOCOL.md section 11) and the C API's local statuses
(section 13) to them.

Every exception is a :class:`NetprotoError` with ``code`` (the wire error code, 0 for a
failure that is not an ERROR from the peer), ``name`` (the wire name, from the library's
``np_error_code_name``), ``retryable`` (``np_error_code_is_retryable``; for local failures,
whether a new attempt may succeed), ``retry_after`` (seconds, when the server said how long
to wait) and ``status`` (the local ``np_status`` number, or None for an event).

Trust boundary: error codes and texts come from the server. Unknown codes are mapped to the
base class, never rejected; texts are kept as given (decoded with replacement) and never
interpreted, except for the ``retry-after-ms=N;`` prefix, which the library parses.

The tables are checked against ``include/netproto.h`` by ``tests/test_error_table.py``: a
code added to the header without a row here fails that test.
"""

from __future__ import annotations

import builtins
from typing import Dict, Optional, Tuple, Type

from . import _lib


class NetprotoError(Exception):
    """Base of every error this package raises for the protocol or the server.

    Attributes: ``code`` (wire error code, 0 if none), ``name`` (its protocol name, e.g.
    ``"BAD_SPEC"``, or the local status name), ``retryable`` (bool), ``retry_after``
    (seconds or None), ``status`` (local np_status number or None), ``message`` (text).
    """

    def __init__(
        self,
        message: str,
        *,
        code: int = 0,
        name: Optional[str] = None,
        retryable: Optional[bool] = None,
        retry_after: Optional[float] = None,
        status: Optional[int] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        if name is None and code:
            name = _wire_name(code)
        self.name = name or ""
        if retryable is None:
            retryable = _lib.error_code_is_retryable(code) if code else False
        self.retryable = retryable
        self.retry_after = retry_after

    def __str__(self) -> str:
        if self.code:
            return f"{self.name or 'error'} ({self.code}): {self.message}"
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code}, name={self.name!r})"


class ConnectionLost(NetprotoError, builtins.ConnectionError):
    """The connection broke or was closed (EOF, I/O error, a silent server, a connection
    ERROR such as IDLE_TIMEOUT, a server that went away): make a new Client."""


class ServerUnavailable(NetprotoError, builtins.ConnectionError):
    """The server cannot be reached or takes no connection now (refused, unreachable,
    TOO_MANY_CONNECTIONS, SHUTTING_DOWN): retry later, possibly elsewhere."""


class ShuttingDown(ServerUnavailable):
    """The server is stopping and takes no new work (SHUTTING_DOWN, retryable)."""


class Timeout(NetprotoError, builtins.TimeoutError):
    """A wait ran out: connecting, or waiting for an answer (the Client's ``timeout``)."""


class AuthError(NetprotoError):
    """Login refused (AUTH_FAILED: unknown user or wrong password), or the server could
    not prove it holds the user's verifier. Not retryable."""


class KeyMismatch(NetprotoError):
    """The server presented a key other than the one pinned for its address in the
    known-servers file: possibly an interposer. Edit the file only if the change is known."""


class ProtocolError(NetprotoError):
    """A peer broke the protocol (framing, encryption, message rules); the connection is
    closed."""


class NotSupported(NetprotoError):
    """The server does not support what was asked (a protocol feature newer than the
    server, such as multi-output jobs): not retryable against the same server."""


class JobError(NetprotoError):
    """The server refused or could not do one job; the connection stays usable."""


class BadSpecError(JobError):
    """The op spec does not parse or a value is out of range (BAD_SPEC); ``message`` is the
    server's text, which names the step."""


class BadImageError(JobError):
    """The input cannot be processed: too large, too many pixels, not a supported format,
    malformed, an op that does not fit it, an output that cannot be encoded, or an input
    that cost the server two workers (``name`` says which)."""


class BusyError(NetprotoError):
    """The server (BUSY), the connection's job limit (TOO_MANY_IN_FLIGHT) or a rate limit
    (RATE_LIMITED) says not now; ``retry_after`` is the advised delay in seconds."""


class ServerError(NetprotoError):
    """The server failed the request (TIMEOUT: no healthy worker in time; INTERNAL)."""


#: Wire error code -> (protocol name, exception class). The one table of this package;
#: reserved codes (never sent by a v1 peer) keep their rows, as an older peer may send them.
ERROR_CODES: Dict[int, Tuple[str, Type[NetprotoError]]] = {
    100: ("PROTOCOL", ProtocolError),
    101: ("UNEXPECTED_MESSAGE", ProtocolError),
    102: ("DUPLICATE_REQUEST", JobError),
    103: ("UNKNOWN_REQUEST", ProtocolError),
    104: ("LENGTH_MISMATCH", ProtocolError),
    105: ("BAD_MAGIC", ProtocolError),
    106: ("BAD_CRC", ProtocolError),
    107: ("FRAME_TOO_LARGE", ProtocolError),
    108: ("UNKNOWN_OPCODE", ProtocolError),
    200: ("AUTH_FAILED", AuthError),
    201: ("NOT_LOGGED_IN", ProtocolError),
    300: ("BAD_SPEC", BadSpecError),
    301: ("INPUT_TOO_LARGE", BadImageError),
    302: ("TOO_MANY_PIXELS", BadImageError),
    303: ("UNSUPPORTED_FORMAT", BadImageError),
    304: ("DECODE_FAILED", BadImageError),
    305: ("BAD_GEOMETRY", BadImageError),
    306: ("ENCODE_FAILED", BadImageError),
    307: ("POISON_INPUT", BadImageError),
    308: ("TOO_MANY_IN_FLIGHT", BusyError),
    400: ("TIMEOUT", ServerError),
    401: ("WORKER_CRASHED", ServerError),
    402: ("SHUTTING_DOWN", ShuttingDown),
    403: ("TOO_MANY_CONNECTIONS", ServerUnavailable),
    404: ("IDLE_TIMEOUT", ConnectionLost),
    405: ("SLOW_CLIENT", ConnectionLost),
    406: ("HANDSHAKE_TIMEOUT", ConnectionLost),
    407: ("RATE_LIMITED", BusyError),
    500: ("INTERNAL", ServerError),
}

#: Local np_status -> (name in netproto.h, exception class, whether a new attempt may
#: succeed). NP_OK and NP_NO_EVENT are not failures; NP_REMOTE_ERROR is mapped by the wire
#: code the peer sent, and NP_IO / NP_EOF while connecting become ServerUnavailable.
STATUSES: Dict[int, Tuple[str, Type[NetprotoError], bool]] = {
    0: ("NP_OK", NetprotoError, False),
    1: ("NP_NO_EVENT", NetprotoError, False),
    2: ("NP_WOULD_BLOCK", NetprotoError, True),
    3: ("NP_EOF", ConnectionLost, True),
    4: ("NP_TIMEOUT", Timeout, True),
    5: ("NP_INPUT_FULL", NetprotoError, True),
    6: ("NP_PEER_SILENT", ConnectionLost, True),
    100: ("NP_NULL_ARGUMENT", NetprotoError, False),
    101: ("NP_INVALID_ARGUMENT", NetprotoError, False),
    102: ("NP_BUFFER_TOO_SMALL", NetprotoError, False),
    103: ("NP_BAD_STATE", NetprotoError, False),
    104: ("NP_PANIC", NetprotoError, False),
    105: ("NP_CLOSED", ConnectionLost, True),
    200: ("NP_BAD_MAGIC", ProtocolError, False),
    201: ("NP_BAD_VERSION", ProtocolError, False),
    202: ("NP_FRAME_TOO_LARGE", ProtocolError, False),
    203: ("NP_BAD_CRC", ProtocolError, False),
    204: ("NP_UNKNOWN_OPCODE", ProtocolError, False),
    205: ("NP_BAD_FLAGS", ProtocolError, False),
    206: ("NP_BAD_RESERVED", ProtocolError, False),
    207: ("NP_MALFORMED", ProtocolError, False),
    208: ("NP_UNEXPECTED_MESSAGE", ProtocolError, False),
    300: ("NP_DECRYPT_FAILED", ProtocolError, False),
    301: ("NP_HANDSHAKE_FAILED", ProtocolError, False),
    302: ("NP_AUTH_FAILED", AuthError, False),
    303: ("NP_BAD_SERVER_SIGNATURE", AuthError, False),
    304: ("NP_SERVER_KEY_CHANGED", KeyMismatch, False),
    305: ("NP_SERVER_KEY_REJECTED", KeyMismatch, False),
    306: ("NP_NONCE_EXHAUSTED", ConnectionLost, True),
    400: ("NP_REMOTE_ERROR", NetprotoError, False),
    401: ("NP_BUSY", BusyError, True),
    402: ("NP_SERVER_SHUTDOWN", ShuttingDown, True),
    403: ("NP_NOT_SUPPORTED", NotSupported, False),
    500: ("NP_IO", ConnectionLost, True),
    501: ("NP_KEY_FILE", NetprotoError, False),
}

NP_EOF = 3
NP_REMOTE_ERROR = 400
NP_BUSY = 401
NP_IO = 500
NP_AUTH_FAILED = 302


def _wire_name(code: int) -> str:
    try:
        name = _lib.error_code_name(code)
    except _lib.LibraryNotFound:
        name = None
    if name:
        return name
    row = ERROR_CODES.get(code)
    return row[0] if row else f"ERROR_{code}"


def _ms(ms: Optional[int]) -> Optional[float]:
    return ms / 1000.0 if ms else None


def from_wire(code: int, message: str, *, retry_after_ms: Optional[int] = None) -> NetprotoError:
    """The exception for an ERROR the server sent with wire ``code`` and ``message``."""
    cls = ERROR_CODES.get(code, ("", NetprotoError))[1]
    if retry_after_ms is None:
        retry_after_ms = _lib.error_text_retry_after_ms(message.encode())
    return cls(message, code=code, retry_after=_ms(retry_after_ms))


def busy(retry_after_ms: int) -> BusyError:
    """The exception for a BUSY answer: the server is full, retry after the delay."""
    return BusyError(
        f"server busy: retry after {retry_after_ms} ms",
        name="BUSY",
        retryable=True,
        retry_after=_ms(retry_after_ms) or 0.0,
    )


def from_status(status: int, *, connecting: bool = False, what: str = "") -> NetprotoError:
    """The exception for a failed C call that returned ``status``, read with the calling
    thread's last-error details (call it right after the failed call, on the same thread)."""
    detail = _lib.last_error() or _lib.status_str(status)
    message = f"{what}: {detail}" if what else detail
    if status == NP_REMOTE_ERROR:
        code = _lib.lib().np_last_error_code()
        retry = _lib.lib().np_last_error_retry_after_ms()
        err = from_wire(code, message, retry_after_ms=retry) if code else None
        if err is not None:
            err.status = status
            if connecting and type(err) is ConnectionLost:
                # A connection ERROR during the handshake: the server never took us.
                err = ServerUnavailable(
                    message, code=code, retry_after=err.retry_after, status=status
                )
            return err
    if status == NP_AUTH_FAILED:
        # The server refused the login proof: the wire code is AUTH_FAILED.
        return AuthError(message, code=200, status=status)
    if status == NP_BUSY:
        retry = _lib.lib().np_last_error_retry_after_ms()
        return BusyError(message, name="BUSY", retryable=True, retry_after=_ms(retry), status=status)
    name, cls, retryable = STATUSES.get(status, (f"status {status}", NetprotoError, False))
    if connecting and cls is ConnectionLost:
        cls = ServerUnavailable
    return cls(message, name=name, retryable=retryable, status=status)

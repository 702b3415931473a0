"""netproto: a Python client for imgserver, speaking its wire protocol through
libnetproto.so (ctypes; no compiled extension).

    from netproto import Client, Ops

    with Client("127.0.0.1:7878", "alice", "s3cret") as c:
        print(c.ping())
        r = c.submit("photo.jpg", Ops().thumbnail(320).format("webp", quality=80))
        open("thumb.webp", "wb").write(r.data)

The library is found from ``$NETPROTO_LIBRARY`` (a path) or as ``libnetproto.so.1`` on the
library search path, on first use (``LibraryNotFound`` otherwise). One Client per thread.

Trust boundary: this module only re-exports; see client.py, errors.py and _lib.py.
"""

from ._lib import LibraryNotFound, version as library_version
from .client import Client, Result, Timings, default_known_servers
from .errors import (
    ERROR_CODES,
    AuthError,
    BadImageError,
    BadSpecError,
    BusyError,
    ConnectionLost,
    JobError,
    KeyMismatch,
    NetprotoError,
    NotSupported,
    ProtocolError,
    ServerError,
    ServerUnavailable,
    ShuttingDown,
    Timeout,
)
from .ops import Ops

__version__ = "0.1.0"

__all__ = [
    "Client",
    "Result",
    "Timings",
    "Ops",
    "default_known_servers",
    "library_version",
    "LibraryNotFound",
    "ERROR_CODES",
    "NetprotoError",
    "AuthError",
    "BadImageError",
    "BadSpecError",
    "BusyError",
    "ConnectionLost",
    "JobError",
    "KeyMismatch",
    "NotSupported",
    "ProtocolError",
    "ServerError",
    "ServerUnavailable",
    "ShuttingDown",
    "Timeout",
]

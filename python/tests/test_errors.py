"""Typed exceptions against a live server: a wrong password, a bad spec, a bad image, a
server that stops or dies under an open connection, a changed server key, an unreachable
server.

Trust boundary: none; a test of the client against the project's own server.
"""

from __future__ import annotations

import signal
import socket

import pytest

import netproto
from netproto import AuthError, BadImageError, BadSpecError, ConnectionLost, KeyMismatch, ServerUnavailable

from conftest import PASSWORD, SAMPLES, USER


def test_wrong_password_is_an_auth_error(server, connect, known_servers) -> None:
    with pytest.raises(AuthError) as e:
        connect(password="not-the-password")
    err = e.value
    assert err.code == 200 and err.name == "AUTH_FAILED"
    assert not err.retryable and err.retry_after is None
    assert isinstance(err, netproto.NetprotoError)
    # A failed first login pins nothing; the right password works afterwards.
    assert not known_servers.exists()
    c = connect()
    assert c.new_server and known_servers.read_text().startswith(server.addr + " ")


def test_bad_spec_carries_the_servers_text(connect) -> None:
    c = connect()
    with pytest.raises(BadSpecError) as e:
        c.submit(SAMPLES / "chelsea_64x64.png", "blur:1,frobnicate")
    err = e.value
    assert err.code == 300 and err.name == "BAD_SPEC" and not err.retryable
    assert "step 2" in err.message and "frobnicate" in err.message, err.message
    # The connection stays usable after a refused job.
    assert c.submit(SAMPLES / "chelsea_64x64.png", "noop").width == 64


def test_bad_image_is_a_bad_image_error(connect) -> None:
    c = connect()
    with pytest.raises(BadImageError) as e:
        c.submit(b"this is not an image", "blur:1")
    assert e.value.name == "UNSUPPORTED_FORMAT" and e.value.code == 303
    truncated = (SAMPLES / "chelsea_64x64.png").read_bytes()[:2000]
    with pytest.raises(BadImageError) as e:
        c.submit(truncated, "blur:1")
    assert e.value.name == "DECODE_FAILED"
    with pytest.raises(BadImageError) as e:
        c.submit(SAMPLES / "chelsea_64x64.png", "crop:60:60:10x10")
    assert e.value.name == "BAD_GEOMETRY"
    assert c.ping() > 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_server_stopped_is_a_connection_error(own_server, known_servers, sig) -> None:
    s = own_server(workers=1)
    c = netproto.Client(s.addr, USER, PASSWORD, known_servers=known_servers, timeout=10)
    assert c.submit(SAMPLES / "chelsea_64x64.png", "invert").width == 64
    s.stop(sig)
    assert not s.running
    with pytest.raises(ConnectionLost) as e:
        c.submit(SAMPLES / "chelsea_64x64.png", "invert")
    assert isinstance(e.value, ConnectionError)  # the builtin, for generic handlers
    assert c.closed
    # Every later call says the same without touching the dead socket.
    with pytest.raises(ConnectionLost):
        c.ping()
    c.close()
    # And a new connection finds nobody there.
    with pytest.raises(ServerUnavailable) as e:
        netproto.Client(s.addr, USER, PASSWORD, known_servers=known_servers, timeout=5)
    assert e.value.retryable


def test_changed_server_key_is_a_key_mismatch(own_server, known_servers) -> None:
    first = own_server("first", workers=1)
    with netproto.Client(first.addr, USER, PASSWORD, known_servers=known_servers) as c:
        assert c.new_server
        pinned = c.fingerprint
    pinned_text = known_servers.read_text()
    first.stop()
    # Another server (its own state directory, so another key) on the same address.
    second = own_server("second", workers=1, listen=first.addr)
    assert second.addr == first.addr
    with pytest.raises(KeyMismatch) as e:
        netproto.Client(second.addr, USER, PASSWORD, known_servers=known_servers)
    assert pinned in e.value.message, e.value.message
    assert not e.value.retryable
    assert known_servers.read_text() == pinned_text  # the pin is left alone
    # The server never saw a login attempt: the key is checked first.
    assert second.try_stats()["logins_failed"] == 0
    assert second.try_stats()["logins_ok"] == 0


def test_nothing_listening_is_server_unavailable(known_servers) -> None:
    # A port that was free a moment ago: bound, then closed.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ServerUnavailable) as e:
        netproto.Client(f"127.0.0.1:{port}", USER, PASSWORD, known_servers=known_servers, timeout=5)
    assert e.value.retryable and isinstance(e.value, ConnectionError)


def test_arguments_from_the_environment(server, known_servers, monkeypatch) -> None:
    monkeypatch.setenv("IMGCLIENT_SERVER", server.addr)
    monkeypatch.setenv("IMGCLIENT_USER", USER)
    monkeypatch.setenv("IMGCLIENT_PASSWORD", PASSWORD)
    monkeypatch.setenv("IMGCLIENT_KNOWN_SERVERS", str(known_servers))
    with netproto.Client() as c:
        assert (c.server, c.user, c.known_servers) == (server.addr, USER, known_servers)
        assert c.ping() > 0
    monkeypatch.delenv("IMGCLIENT_PASSWORD")
    with pytest.raises(ValueError, match="IMGCLIENT_PASSWORD"):
        netproto.Client()

"""The package's tables against the C header they mirror (include/netproto.h): every wire
error code (``#define NP_ERROR_*``) and every status (``enum np_status``) has exactly one
row, with the header's name, and the library names and classifies them the same way; the
ctypes structures have the header's layout (checked by compiling a tiny C program, when a C
compiler is there). So a code added to the header cannot be missed here.

Trust boundary: none.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess

import pytest

import netproto
from netproto import _lib, errors

from conftest import HEADER


def header_text() -> str:
    assert HEADER.is_file(), f"{HEADER} missing (set NETPROTO_HEADER)"
    return HEADER.read_text()


def header_error_codes() -> dict:
    codes = {int(n): name for name, n in re.findall(r"^#define NP_ERROR_(\w+) (\d+)\s*$", header_text(), re.M)}
    assert len(codes) > 20, "no NP_ERROR_ defines found: did the header change form?"
    return codes


def header_statuses() -> dict:
    body = re.search(r"enum np_status\b.*?\{(.*?)\};", header_text(), re.S)
    assert body, "no enum np_status in the header"
    found = {int(n): "NP_" + name for name, n in re.findall(r"^\s*NP_(\w+) = (\d+),", body.group(1), re.M)}
    assert len(found) > 20
    return found


def test_error_code_table_matches_the_header() -> None:
    want = header_error_codes()
    have = {code: name for code, (name, _) in errors.ERROR_CODES.items()}
    assert have == want


def test_library_agrees_with_the_table() -> None:
    for code, (name, cls) in errors.ERROR_CODES.items():
        assert _lib.error_code_name(code) == name
        err = cls("x", code=code)
        assert (err.code, err.name) == (code, name)
        assert err.retryable == _lib.error_code_is_retryable(code)
    # Numbers the protocol gives retryability to (PROTOCOL.md section 11).
    retryable = {c for c in errors.ERROR_CODES if _lib.error_code_is_retryable(c)}
    assert {308, 400, 402, 403, 404, 405, 406, 407} <= retryable
    assert not retryable & {100, 200, 300, 301, 302, 303, 304, 305, 306, 307, 500}
    # A code nobody knows maps to the base class, never fails.
    err = errors.from_wire(999, "from the future")
    assert type(err) is netproto.NetprotoError and err.code == 999 and not err.retryable
    assert _lib.error_code_name(999) is None


def test_classes_of_the_codes_the_brief_names() -> None:
    cls = {name: c for _, (name, c) in errors.ERROR_CODES.items()}
    assert cls["AUTH_FAILED"] is netproto.AuthError
    assert cls["BAD_SPEC"] is netproto.BadSpecError
    assert cls["DECODE_FAILED"] is netproto.BadImageError
    assert issubclass(cls["SHUTTING_DOWN"], netproto.ServerUnavailable)
    assert cls["TOO_MANY_IN_FLIGHT"] is netproto.BusyError
    assert issubclass(cls["IDLE_TIMEOUT"], netproto.ConnectionLost)


def test_status_table_matches_the_header() -> None:
    want = header_statuses()
    have = {n: name for n, (name, _, _) in errors.STATUSES.items()}
    assert have == want
    for n in want:
        assert _lib.status_str(n) != "unknown status", n
    assert errors.STATUSES[304][1] is netproto.KeyMismatch
    assert errors.STATUSES[302][1] is netproto.AuthError


def test_event_kinds_match_the_header() -> None:
    body = re.search(r"enum np_event_kind\b.*?\{(.*?)\};", header_text(), re.S).group(1)
    kinds = {name: int(n) for name, n in re.findall(r"^\s*NP_EVENT_(\w+) = (\d+),", body, re.M)}
    for name, value in kinds.items():
        mine = getattr(_lib, "EV_" + name, None)
        if mine is not None:
            assert mine == value, name
    assert _lib.EV_JOB_RESULT == kinds["JOB_RESULT"] and _lib.EV_PONG == kinds["PONG"]


def test_limits_match_the_header() -> None:
    text = header_text()
    for name in ("NP_MAX_CHUNK_DATA", "NP_MAX_SPEC_LEN", "NP_MAX_PING_PAYLOAD", "NP_MAX_VARIANTS"):
        m = re.search(rf"^#define {name} (\d+)", text, re.M)
        assert m and int(m.group(1)) == getattr(_lib, name), name


C_LAYOUT = r"""
#include <stdio.h>
#include <stddef.h>
#include "netproto.h"
#define F(t, f) printf("%s.%s %zu\n", #t, #f, offsetof(t, f))
int main(void) {
    printf("np_event %zu\nnp_result_info %zu\n", sizeof(np_event), sizeof(np_result_info));
    F(np_event, kind); F(np_event, request_id); F(np_event, code); F(np_event, last);
    F(np_event, variant);
    F(np_event, total_len); F(np_event, data); F(np_event, data_len); F(np_event, text);
    F(np_event, text_len); F(np_event, info); F(np_event, server_key);
    F(np_result_info, total_len); F(np_result_info, width); F(np_result_info, height);
    F(np_result_info, format); F(np_result_info, queue_us); F(np_result_info, decode_us);
    F(np_result_info, filter_us); F(np_result_info, encode_us);
    return 0;
}
"""


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_struct_layout_matches_the_header(tmp_path) -> None:
    src = tmp_path / "layout.c"
    src.write_text(C_LAYOUT)
    exe = tmp_path / "layout"
    subprocess.run(["cc", "-I", str(HEADER.parent), str(src), "-o", str(exe)], check=True)
    got = dict(line.rsplit(" ", 1) for line in subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.splitlines())
    mine = {"np_event": ctypes.sizeof(_lib.Event), "np_result_info": ctypes.sizeof(_lib.ResultInfo)}
    for struct, cls in (("np_event", _lib.Event), ("np_result_info", _lib.ResultInfo)):
        for field, _ in cls._fields_:
            mine[f"{struct}.{field}"] = getattr(cls, field).offset
    assert {k: int(v) for k, v in got.items()} == mine

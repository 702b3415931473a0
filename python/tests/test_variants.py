"""Multi-output jobs through the Python client (``Client.submit_variants``): each variant is
byte-identical to the same spec run alone, a failing variant is an error in its place while
the others arrive, the request's own failure raises, and the argument checks are local.

Trust boundary: none; a test of the client against the project's own server.
"""

from __future__ import annotations

import pytest

from netproto import BadImageError, NetprotoError, Ops, Result

from conftest import SAMPLES, local_result


def test_each_variant_is_what_the_spec_alone_gives(connect) -> None:
    c = connect()
    path = SAMPLES / "rocket.jpg"
    specs = ["resize:320x,format:webp", str(Ops().grayscale().format("png")), "thumbnail:64"]
    got = c.submit_variants(path, specs)
    assert len(got) == 3
    for spec, r in zip(specs, got):
        assert isinstance(r, Result), f"{spec}: {r!r}"
        assert r.data == local_result(path, spec), spec
    # The connection goes on with single jobs.
    assert c.submit(path, specs[2]).data == got[2].data


def test_a_failing_variant_fails_alone(connect) -> None:
    path = SAMPLES / "chelsea_64x64.png"
    got = connect().submit_variants(path, ["invert", "crop:250:0:10x10", "grayscale"])
    assert isinstance(got[0], Result) and isinstance(got[2], Result)
    assert isinstance(got[1], NetprotoError) and got[1].name == "BAD_GEOMETRY", repr(got[1])


def test_the_requests_own_failure_raises_and_arguments_are_checked(connect) -> None:
    c = connect()
    with pytest.raises(BadImageError):
        c.submit_variants(b"not an image", ["noop", "grayscale"])
    with pytest.raises(ValueError):
        c.submit_variants(b"x", ["noop"])
    with pytest.raises(ValueError):
        c.submit_variants(b"x", ["noop"] * 9)
    with pytest.raises(ValueError):
        c.submit_variants(b"x", ["noop;invert", "grayscale"])
    assert isinstance(c.submit_variants(SAMPLES / "chelsea_64x64.png", ["noop", "invert"])[1], Result)

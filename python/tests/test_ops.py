"""The op-spec builder: the text it makes, and the light checks it does (the server is the
authority on everything else). No server needed.

Trust boundary: none.
"""

from __future__ import annotations

import pytest

from netproto import Ops


def test_builds_the_documented_text() -> None:
    assert str(Ops().blur(2).thumbnail(320).format("webp", quality=80)) == "blur:2,thumbnail:320,format:webp:80"
    assert str(Ops().resize(800, 600, mode="fill", filter="lanczos3")) == "resize:800x600:fill:lanczos3"
    assert str(Ops().resize(800)) == "resize:800x"
    assert str(Ops().resize(height=600)) == "resize:x600"
    assert str(Ops().crop(10, 20, 300, 200).rotate(90).flip("h")) == "crop:10:20:300x200,rotate:90,flip:h"
    assert str(Ops().sharpen(1.0, 5).contrast(-12.5).brightness(-20)) == "sharpen:1:5,contrast:-12.5,brightness:-20"
    assert str(Ops().grayscale().invert().noop().scale(50, "nearest")) == "grayscale,invert,noop,scale:50:nearest"
    assert str(Ops().format("webp", "lossless")) == "format:webp:lossless"
    assert str(Ops()) == ""
    assert Ops("blur:1").invert() == "blur:1,invert"


def test_decimals_have_no_exponent() -> None:
    assert str(Ops().blur(1e-5)) == "blur:0.00001"
    assert str(Ops().blur(0.1)) == "blur:0.1"
    assert str(Ops().contrast(-0.0)) == "contrast:0"


@pytest.mark.parametrize(
    "build",
    [
        lambda: Ops().format("png").blur(1),
        lambda: Ops("format:png").blur(1),
        lambda: Ops().format("bogus"),
        lambda: Ops().format("png", quality=5),
        lambda: Ops().format("jpeg", "lossless"),
        lambda: Ops().rotate(45),
        lambda: Ops().flip("x"),
        lambda: Ops().resize(),
        lambda: Ops().resize(10, 10, mode="stretch"),
        lambda: Ops().blur(float("nan")),
    ],
)
def test_refuses_what_the_grammar_lists_as_impossible(build) -> None:
    with pytest.raises(ValueError):
        build()


def test_refuses_wrong_types() -> None:
    with pytest.raises(TypeError):
        Ops().thumbnail(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Ops().blur("2")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Ops().brightness(True)

"""ops: a small builder for op-spec text (docs/PROTOCOL.md section 12), e.g.
``Ops().blur(2).thumbnail(320).format("webp", quality=80)`` is
``"blur:2,thumbnail:320,format:webp:80"``.

Validation is light on purpose: the builder checks types, the choices the grammar lists
(modes, filters, formats, rotations) and that ``format`` is the last step, so a typo fails
here with a clear message; ranges and everything else are the server's to check (it is the
authority, and answers BAD_SPEC with a text naming the step).

Trust boundary: none; it only formats the caller's own values.
"""

from __future__ import annotations

import decimal
from typing import List, Optional, Union

Number = Union[int, float]

MODES = ("fit", "fill", "exact")
FILTERS = ("nearest", "triangle", "catmullrom", "gaussian", "lanczos3")
FORMATS = ("png", "jpeg", "jpg", "gif", "webp", "bmp", "tiff", "tif", "avif", "same")
#: Formats that take a quality (webp also takes "lossless").
QUALITY_FORMATS = ("jpeg", "jpg", "webp", "avif")


def _int(name: str, v: object) -> str:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{name} must be an int, not {type(v).__name__}")
    return str(v)


def _num(name: str, v: object) -> str:
    """A decimal the grammar accepts: no exponent, no trailing point, no "+"."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{name} must be a number, not {type(v).__name__}")
    if isinstance(v, int):
        return str(v)
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite")
    # The shortest text that reads back as this float, written without an exponent.
    text = format(decimal.Decimal(repr(v)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


class Ops:
    """An op spec built step by step; ``str(ops)`` is the text sent to the server.

    Every method appends one step and returns the builder, so calls chain. An ``Ops`` is
    accepted wherever a spec string is (``Client.submit``).
    """

    def __init__(self, spec: str = "") -> None:
        """Start empty, or from existing spec text (kept as given, not parsed)."""
        self._steps: List[str] = [s for s in (spec.split(",") if spec.strip() else [])]
        self._has_format = any(s.strip().startswith("format:") for s in self._steps)

    def _add(self, step: str) -> "Ops":
        if self._has_format:
            raise ValueError("format must be the last step")
        self._steps.append(step)
        return self

    def __str__(self) -> str:
        return ",".join(self._steps)

    def __repr__(self) -> str:
        return f"Ops({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (Ops, str)):
            return str(self) == str(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(str(self))

    def __len__(self) -> int:
        return len(self._steps)

    def blur(self, sigma: Number) -> "Ops":
        """Gaussian blur of standard deviation ``sigma`` pixels (0 < sigma <= 100)."""
        return self._add(f"blur:{_num('sigma', sigma)}")

    def sharpen(self, sigma: Number, threshold: Optional[int] = None) -> "Ops":
        """Unsharp mask of ``sigma``; only differences above ``threshold`` are sharpened."""
        step = f"sharpen:{_num('sigma', sigma)}"
        if threshold is not None:
            step += f":{_int('threshold', threshold)}"
        return self._add(step)

    def resize(
        self,
        width: Optional[int] = None,
        height: Optional[int] = None,
        *,
        mode: Optional[str] = None,
        filter: Optional[str] = None,
    ) -> "Ops":
        """Resize to a box: ``mode`` fit (default, keeps the aspect ratio), fill or exact;
        one side may be omitted (fit only). ``filter`` is the resampling filter."""
        if width is None and height is None:
            raise ValueError("resize needs a width, a height or both")
        w = "" if width is None else _int("width", width)
        h = "" if height is None else _int("height", height)
        step = f"resize:{w}x{h}"
        if mode is not None:
            if mode not in MODES:
                raise ValueError(f"resize mode {mode!r}: one of {', '.join(MODES)}")
            step += f":{mode}"
        if filter is not None:
            if filter not in FILTERS:
                raise ValueError(f"filter {filter!r}: one of {', '.join(FILTERS)}")
            step += f":{filter}"
        return self._add(step)

    def scale(self, percent: int, filter: Optional[str] = None) -> "Ops":
        """Exact resize to ``percent`` % of each side (1..=1000)."""
        step = f"scale:{_int('percent', percent)}"
        if filter is not None:
            if filter not in FILTERS:
                raise ValueError(f"filter {filter!r}: one of {', '.join(FILTERS)}")
            step += f":{filter}"
        return self._add(step)

    def thumbnail(self, size: int) -> "Ops":
        """Fit inside ``size`` x ``size`` with a fast filter; never enlarges."""
        return self._add(f"thumbnail:{_int('size', size)}")

    def crop(self, x: int, y: int, width: int, height: int) -> "Ops":
        """Cut out the rectangle at (x, y); it must lie inside the image."""
        return self._add(
            f"crop:{_int('x', x)}:{_int('y', y)}:{_int('width', width)}x{_int('height', height)}"
        )

    def rotate(self, degrees: int) -> "Ops":
        """Rotate clockwise by 90, 180 or 270 degrees."""
        if degrees not in (90, 180, 270) or isinstance(degrees, bool):
            raise ValueError("rotate takes 90, 180 or 270")
        return self._add(f"rotate:{degrees}")

    def flip(self, axis: str) -> "Ops":
        """Mirror: ``"h"`` left-right, ``"v"`` top-bottom."""
        if axis not in ("h", "v"):
            raise ValueError('flip takes "h" or "v"')
        return self._add(f"flip:{axis}")

    def grayscale(self) -> "Ops":
        """Convert to grey (alpha kept)."""
        return self._add("grayscale")

    def invert(self) -> "Ops":
        """Invert the colour channels."""
        return self._add("invert")

    def noop(self) -> "Ops":
        """Do nothing (decode and re-encode)."""
        return self._add("noop")

    def brightness(self, value: int) -> "Ops":
        """Add ``value`` (-255..=255, 8-bit units) to every colour channel."""
        return self._add(f"brightness:{_int('value', value)}")

    def contrast(self, percent: Number) -> "Ops":
        """Change the contrast by ``percent`` (-100..=100; positive increases)."""
        return self._add(f"contrast:{_num('percent', percent)}")

    def format(self, name: str, quality: Union[int, str, None] = None) -> "Ops":
        """Output format, the last step: png, jpeg/jpg, gif, webp, bmp, tiff/tif, avif or
        same; ``quality`` 1..=100 for jpeg, webp (lossy) and avif, or ``"lossless"`` for
        webp. Without a format step the output has the input's format."""
        if name not in FORMATS:
            raise ValueError(f"format {name!r}: one of {', '.join(FORMATS)}")
        step = f"format:{name}"
        if quality is not None:
            if name not in QUALITY_FORMATS:
                raise ValueError(f"format {name} takes no quality")
            if quality == "lossless":
                if name != "webp":
                    raise ValueError("only webp can be lossless")
                step += ":lossless"
            else:
                step += f":{_int('quality', quality)}"
        self._add(step)
        self._has_format = True
        return self

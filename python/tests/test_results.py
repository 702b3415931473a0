"""Results through the Python client are byte-identical to ``imgclient --local`` (the same
filter code run in-process), for several op specs and sample images, including a large
image whose input and output each take several chunks.

Trust boundary: none; a test of the client against the project's own server.
"""

from __future__ import annotations

import pytest

from netproto import Ops

from conftest import SAMPLES, local_result

CASES = [
    ("chelsea_64x64.png", "blur:2"),
    ("chelsea_64x64.png", "thumbnail:32,format:webp"),
    ("chelsea_64x64.png", str(Ops().grayscale().format("jpeg", quality=80))),
    ("astronaut_128x128.jpg", "resize:50x40:fill,format:png"),
    ("astronaut_128x128.jpg", str(Ops().rotate(90).flip("h"))),
    ("rocket.jpg", "sharpen:1.0:5,format:png"),
    ("camera.png", str(Ops().contrast(-12.5).brightness(10).scale(50))),
    ("coffee.png", "crop:10:20:100x80,invert"),
]


@pytest.mark.parametrize("image,spec", CASES)
def test_result_matches_imgclient_local(connect, image: str, spec: str) -> None:
    c = connect()
    path = SAMPLES / image
    want = local_result(path, spec)
    r = c.submit(path, spec)
    assert r.data == want, f"{image} {spec}: {len(r.data)} bytes, local {len(want)}"
    # The same through bytes in, and through the builder's own text.
    assert c.submit(path.read_bytes(), Ops(spec)).data == want


def test_result_metadata(connect) -> None:
    r = connect().submit(SAMPLES / "chelsea_64x64.png", Ops().resize(40, 30, mode="exact").format("webp", quality=80))
    assert (r.width, r.height, r.format) == (40, 30, "webp")
    assert r.data[:4] == b"RIFF" and r.data[8:12] == b"WEBP"
    t = r.timings
    assert t.decode_us > 0 and t.encode_us > 0
    assert min(t.queue_us, t.filter_us) >= 0


def test_submit_file_writes_the_output(connect, tmp_path) -> None:
    out = tmp_path / "out.png"
    r = connect().submit_file(SAMPLES / "chelsea_64x64.png", "rotate:180", out)
    assert out.read_bytes() == r.data == local_result(SAMPLES / "chelsea_64x64.png", "rotate:180")


@pytest.mark.parametrize("spec", ["noop", "rotate:90"])
def test_large_image_round_trips_in_chunks(connect, server, spec: str) -> None:
    path = SAMPLES / "astronaut.png"
    data = path.read_bytes()
    chunk = 65536
    assert len(data) > 4 * chunk  # the upload takes several JOB frames
    before = server.try_stats()["bytes_in"]
    r = connect().submit(data, spec)
    want = local_result(path, spec)
    assert len(want) > 2 * chunk  # and the result several RESULT frames
    assert r.data == want
    assert (r.width, r.height, r.format) == (512, 512, "png")
    assert server.try_stats()["bytes_in"] - before >= len(data)

#!/usr/bin/env python3
"""imgmeta: header facts about JPEG and PNG files, python3 stdlib only.

Used by the bench harness to choose the image set (dimensions, EXIF orientation, ICC), to
match the third-party encoders' settings to what the project's own encoder produced (JPEG
chroma subsampling, PNG zlib level and row filters), and by report.py to document what every
implementation actually wrote (metadata kept or not, progressive or baseline).

    python3 bench/imgmeta.py FILE...          one JSON object per line
    python3 bench/imgmeta.py --encoder FILE   the encoder settings to copy (JSON)
"""

import json
import struct
import sys
import zlib

PNG_SIG = b"\x89PNG\r\n\x1a\n"


def exif_orientation(tiff):
    """The Orientation tag (0x0112) of IFD0 in a TIFF-structured EXIF block, or None."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return None
    e = "<" if tiff[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack(e + "I", tiff[4:8])
        (n,) = struct.unpack(e + "H", tiff[ifd : ifd + 2])
        for i in range(n):
            off = ifd + 2 + 12 * i
            tag, typ, _count = struct.unpack(e + "HHI", tiff[off : off + 8])
            if tag == 0x0112 and typ == 3:
                return struct.unpack(e + "H", tiff[off + 8 : off + 10])[0]
    except struct.error:
        return None
    return None


def jpeg_info(b):
    info = {"format": "jpeg", "markers": [], "icc": False, "exif_orientation": None}
    i = 2
    while i + 4 <= len(b):
        if b[i] != 0xFF:
            i += 1
            continue
        m = b[i + 1]
        if m == 0xFF:
            i += 1
            continue
        if m in (0xD8, 0x01) or 0xD0 <= m <= 0xD7:
            i += 2
            continue
        if m == 0xDA:  # start of scan: the headers are over
            break
        (length,) = struct.unpack(">H", b[i + 2 : i + 4])
        seg = b[i + 4 : i + 2 + length]
        if 0xE0 <= m <= 0xEF or m == 0xFE:
            info["markers"].append("APP%d" % (m - 0xE0) if m != 0xFE else "COM")
        if m == 0xE1 and seg[:6] == b"Exif\0\0":
            info["exif_orientation"] = exif_orientation(seg[6:])
        if m == 0xE2 and seg[:12] == b"ICC_PROFILE\0":
            info["icc"] = True
        if m in (0xC0, 0xC1, 0xC2):
            bits, h, w, nc = struct.unpack(">BHHB", seg[:6])
            comps = [(seg[6 + 3 * k + 1] >> 4, seg[6 + 3 * k + 1] & 15) for k in range(nc)]
            info.update(width=w, height=h, bit_depth=bits, channels=nc,
                        progressive=(m == 0xC2))
            if nc == 3:
                (yh, yv), (ch, cv) = comps[0], comps[1]
                info["subsampling"] = {(1, 1): "444", (2, 1): "422", (2, 2): "420"}.get(
                    (yh // ch, yv // cv), "%dx%d" % (yh // ch, yv // cv))
            else:
                info["subsampling"] = "gray"
        i += 2 + length
    return info


def png_info(b):
    w, h, depth, ctype = struct.unpack(">IIBB", b[16:26])
    chans = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(ctype, 0)
    info = {"format": "png", "width": w, "height": h, "bit_depth": depth, "channels": chans,
            "color_type": ctype, "progressive": b[28] == 1, "chunks": [], "icc": False,
            "exif_orientation": None}
    idat = []
    i = 8
    while i + 8 <= len(b):
        length, kind = struct.unpack(">I4s", b[i : i + 8])
        kind = kind.decode("latin-1")
        data = b[i + 8 : i + 8 + length]
        if kind not in info["chunks"]:
            info["chunks"].append(kind)
        if kind == "iCCP":
            info["icc"] = True
        if kind == "eXIf":
            info["exif_orientation"] = exif_orientation(data)
        if kind == "IDAT":
            idat.append(data)
        i += 12 + length
    if idat:
        z = b"".join(idat)
        # FLEVEL (2 bits of the zlib header): 0 fastest, 1 fast, 2 default (6), 3 maximum.
        info["zlib_flevel"] = z[1] >> 6 if len(z) > 1 else None
        # Row filter bytes of the first rows (non-interlaced): which filters the encoder used.
        if not info["progressive"] and chans:
            stride = (w * chans * depth + 7) // 8 + 1
            try:
                raw = zlib.decompressobj().decompress(z, stride * min(h, 64))
                info["row_filters"] = sorted({raw[r * stride] for r in range(len(raw) // stride)})
            except zlib.error:
                info["row_filters"] = None
    return info


def info(path):
    with open(path, "rb") as f:
        b = f.read()
    if b[:8] == PNG_SIG:
        out = png_info(b)
    elif b[:2] == b"\xff\xd8":
        out = jpeg_info(b)
    else:
        out = {"format": "other"}
    out["bytes"] = len(b)
    return out


def encoder_settings(jpeg_path=None, png_path=None):
    """Settings for the third-party encoders that copy what the project's encoder did."""
    s = {"subsampling": "420", "png_level": 6, "png_filter": "adaptive"}
    if jpeg_path:
        j = info(jpeg_path)
        if j.get("subsampling") in ("444", "422", "420"):
            s["subsampling"] = j["subsampling"]
    if png_path:
        p = info(png_path)
        s["png_level"] = {0: 1, 1: 3, 2: 6, 3: 9}.get(p.get("zlib_flevel"), 6)
        rf = p.get("row_filters")
        if rf is not None:
            s["png_filter"] = "none" if rf == [0] else "adaptive"
    return s


def main(argv):
    if argv[:1] == ["--encoder"]:
        jp = next((a for a in argv[1:] if a.lower().endswith((".jpg", ".jpeg"))), None)
        pp = next((a for a in argv[1:] if a.lower().endswith(".png")), None)
        print(json.dumps(encoder_settings(jp, pp)))
        return 0
    for p in argv:
        print(json.dumps(dict(info(p), path=p)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

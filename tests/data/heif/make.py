#!/usr/bin/env python3
"""Regenerate the HEIF/HEIC/AVIF test fixtures in this directory.

Run from anywhere:  python3 tests/data/heif/make.py
(or tests/data/heif/make.sh, which checks the tools first).

Produced with (Debian 12 packages):
  heif-enc / heif-info  libheif-examples 1.15.1 (x265 3.5 HEVC encoder, aom 3.6.0 AV1 encoder)
  python3               3.11, standard library only
  ICC profile           icc-profiles-free: compatibleWithAdobeRGB1998.icc (580 bytes)
The encoders are lossy and not bit-for-bit reproducible across versions; the tests
only check colours with a tolerance, so regenerated files serve as well.

The picture: 64x48 pixels, four flat quadrants, so that any rotation or mirroring
is visible:
    top-left red      top-right green
    bottom-left blue  bottom-right yellow

Files:
  orient-1.heic .. orient-8.heic  HEIC whose *displayed* picture is the one above.
      The stored pixels are transformed, and HEIF transformation properties
      (irot, then imir) are added to the primary item so that a reader applying
      them shows the picture right side up. Numbered like the EXIF orientations
      they correspond to. heif-enc has no option for these boxes, so this script
      adds them to the container itself (ipco, ipma, and the iloc offsets that move).
  plain.avif       the picture as AVIF (aom).
  alpha.avif       the picture as AVIF with an alpha channel: the right half is
                   fully transparent (its colours are still stored).
  p3-nclx.heic     with an nclx colour box: primaries 12 (Display P3), transfer 13
                   (sRGB), matrix 6, full range (the box added by this script).
  adobe-icc.heic   with an ICC profile (colr prof) copied from the PNG's iCCP.
  10bit.heic       10 bits per sample (from a 16-bit PNG), as iPhones write.
  p3-photo.heic    examples/sample.jpg re-expressed in Display P3 (decoded with
                   djpeg, converted with the standard primaries and the sRGB curve),
                   encoded at quality 90 with an nclx box (12, 13, 6, full range):
                   a photo whose colours tests/photos.rs checks after sealing.
"""

import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
W, H = 64, 48
RED = (220, 30, 30)
GREEN = (30, 200, 30)
BLUE = (30, 30, 220)
YELLOW = (230, 230, 40)
ICC = "/usr/share/color/icc/compatibleWithAdobeRGB1998.icc"


def canonical():
    rows = []
    for y in range(H):
        row = []
        for x in range(W):
            top, left = y < H // 2, x < W // 2
            row.append(RED if top and left else GREEN if top else BLUE if left else YELLOW)
        rows.append(row)
    return rows


def rot_ccw(img):
    """Rotate 90 degrees anti-clockwise."""
    h, w = len(img), len(img[0])
    return [[img[x][w - 1 - y] for x in range(h)] for y in range(w)]


def rot_cw(img):
    for _ in range(3):
        img = rot_ccw(img)
    return img


def mirror_lr(img):
    return [list(reversed(r)) for r in img]


def mirror_tb(img):
    return list(reversed(img))


# EXIF orientation -> (irot anti-clockwise quarter turns, imir axis or None).
# HEIF applies irot first, then imir. imir 0 exchanges top and bottom, imir 1
# exchanges left and right: the reading of the current HEIF text, of libheif and
# of libavif (the 2017 text's "vertical/horizontal axis" wording was ambiguous).
ORIENTATIONS = {
    1: (0, None),
    2: (0, 1),
    3: (2, None),
    4: (0, 0),
    5: (1, 0),
    6: (3, None),
    7: (3, 0),
    8: (1, None),
}


def stored_for(turns, axis):
    """The stored picture such that imir(irot(stored)) is the canonical one."""
    img = canonical()
    if axis == 0:
        img = mirror_tb(img)
    elif axis == 1:
        img = mirror_lr(img)
    for _ in range(turns):
        img = rot_cw(img)
    return img


def with_transparent_right_half(img):
    return [[px + ((255,) if x < W // 2 else (0,)) for x, px in enumerate(row)] for row in img]


def png(img, bits=8, icc=None):
    h, w = len(img), len(img[0])
    colour_type = 6 if len(img[0][0]) == 4 else 2
    raw = bytearray()
    for row in img:
        raw.append(0)
        for px in row:
            for c in px:
                if bits == 8:
                    raw.append(c)
                else:
                    raw += struct.pack(">H", c * 257)

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bits, colour_type, 0, 0, 0))
    if icc is not None:
        out += chunk(b"iCCP", b"AdobeRGB\x00\x00" + zlib.compress(icc))
    out += chunk(b"IDAT", zlib.compress(bytes(raw), 9)) + chunk(b"IEND", b"")
    return out


# ---------- ISOBMFF editing ----------


def boxes(data, start, end):
    """(type, box start, payload start, box end) of each box in data[start:end]."""
    out = []
    i = start
    while i + 8 <= end:
        size, kind = struct.unpack(">I4s", data[i : i + 8])
        head = 8
        if size == 1:
            size = struct.unpack(">Q", data[i + 8 : i + 16])[0]
            head = 16
        elif size == 0:
            size = end - i
        if size < head or i + size > end:
            raise ValueError("bad box at %d" % i)
        out.append((kind.decode("latin-1"), i, i + head, i + size))
        i += size
    return out


def box(kind, payload):
    return struct.pack(">I4s", 8 + len(payload), kind.encode()) + payload


def find(children, kind):
    hits = [c for c in children if c[0] == kind]
    if len(hits) != 1:
        raise ValueError("expected one %s box, found %d" % (kind, len(hits)))
    return hits[0]


def add_transforms(data, turns, axis):
    """Add irot/imir properties (essential) to the primary item."""
    props = []
    if turns:
        props.append((box("irot", bytes([turns & 3])), True))
    if axis is not None:
        props.append((box("imir", bytes([axis & 1])), True))
    return add_properties(data, props)


def nclx(primaries, transfer, matrix, full_range):
    payload = b"nclx" + struct.pack(">HHHB", primaries, transfer, matrix, 0x80 if full_range else 0)
    return box("colr", payload)


def add_properties(data, props):
    """Append properties [(box, essential)] to ipco, associate them with the
    primary item in ipma, and fix the iloc offsets that move."""
    top = boxes(data, 0, len(data))
    meta = find(top, "meta")
    meta_children = boxes(data, meta[2] + 4, meta[3])  # meta is a FullBox
    pitm = find(meta_children, "pitm")
    pitm_version = data[pitm[2]]
    primary = struct.unpack(">H" if pitm_version == 0 else ">I", data[pitm[2] + 4 : pitm[2] + (6 if pitm_version == 0 else 8)])[0]
    iprp = find(meta_children, "iprp")
    iprp_children = boxes(data, iprp[2], iprp[3])
    ipco = find(iprp_children, "ipco")
    ipma = find(iprp_children, "ipma")

    # New properties, appended to ipco.
    new_props = b""
    n_props = len(boxes(data, ipco[2], ipco[3]))
    new_indices = []
    for prop, essential in props:
        new_props += prop
        n_props += 1
        new_indices.append((n_props, essential))
    if not new_indices:
        return data
    new_ipco = box("ipco", data[ipco[2] : ipco[3]] + new_props)

    # ipma: append the (essential) associations to the primary item's entry.
    p = ipma[2]
    version, flags = data[p], int.from_bytes(data[p + 1 : p + 4], "big")
    big_index = flags & 1
    out = bytearray(data[p : p + 4])
    count = struct.unpack(">I", data[p + 4 : p + 8])[0]
    out += data[p + 4 : p + 8]
    q = p + 8
    for _ in range(count):
        id_len = 2 if version < 1 else 4
        item = int.from_bytes(data[q : q + id_len], "big")
        n = data[q + id_len]
        assoc_len = 2 if big_index else 1
        assoc = data[q + id_len + 1 : q + id_len + 1 + n * assoc_len]
        q += id_len + 1 + n * assoc_len
        extra = b""
        if item == primary:
            for idx, essential in new_indices:
                if big_index:
                    extra += ((0x8000 if essential else 0) | idx).to_bytes(2, "big")
                else:
                    extra += bytes([(0x80 if essential else 0) | idx])
            n += len(new_indices)
        out += item.to_bytes(id_len, "big") + bytes([n]) + assoc + extra
    new_ipma = box("ipma", bytes(out))

    new_iprp_payload = b""
    for c in iprp_children:
        if c[0] == "ipco":
            new_iprp_payload += new_ipco
        elif c[0] == "ipma":
            new_iprp_payload += new_ipma
        else:
            new_iprp_payload += data[c[1] : c[3]]
    new_iprp = box("iprp", new_iprp_payload)
    delta = len(new_iprp) - (iprp[3] - iprp[1])

    # iloc: everything after meta moves by delta.
    new_meta_payload = data[meta[2] : meta[2] + 4]
    for c in meta_children:
        if c[0] == "iprp":
            new_meta_payload += new_iprp
        elif c[0] == "iloc":
            new_meta_payload += shift_iloc(data[c[1] : c[3]], delta, meta[3])
        else:
            new_meta_payload += data[c[1] : c[3]]
    new_meta = box("meta", new_meta_payload)
    return data[: meta[1]] + new_meta + data[meta[3] :]


def shift_iloc(b, delta, meta_end):
    b = bytearray(b)
    p = 8
    version = b[p]
    p += 4
    offset_size, length_size = b[p] >> 4, b[p] & 15
    base_size, index_size = b[p + 1] >> 4, (b[p + 1] & 15) if version in (1, 2) else 0
    p += 2
    if version < 2:
        count = struct.unpack(">H", b[p : p + 2])[0]
        p += 2
    else:
        count = struct.unpack(">I", b[p : p + 4])[0]
        p += 4

    def shift(pos, size):
        if size == 0:
            return
        v = int.from_bytes(b[pos : pos + size], "big")
        if v >= meta_end:
            b[pos : pos + size] = (v + delta).to_bytes(size, "big")

    for _ in range(count):
        p += 2 if version < 2 else 4  # item id
        method = 0
        if version in (1, 2):
            method = b[p + 1] & 15
            p += 2
        p += 2  # data reference index
        if method == 0:
            shift(p, base_size)
        base = int.from_bytes(b[p : p + base_size], "big") if base_size else 0
        p += base_size
        extents = struct.unpack(">H", b[p : p + 2])[0]
        p += 2
        for _ in range(extents):
            p += index_size
            if method == 0 and base == 0:
                shift(p, offset_size)
            p += offset_size + length_size
    return bytes(b)


def read_png_rgb(data):
    """Pixels of an 8-bit RGB or RGBA PNG, as written by heif-convert."""
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + n]
        if kind == b"IHDR":
            w, h, bits, ctype = struct.unpack(">IIBB", body[:10])
            assert bits == 8 and ctype in (2, 6), (bits, ctype)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, rows, prev = zlib.decompress(idat), [], bytearray(w * bpp)
    stride = w * bpp
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(line[x * bpp : x * bpp + 3]) for x in range(w)])
        prev = line
    return rows


def check_displayed(path, tmp):
    """Decode with heif-convert (an independent reader) and check the quadrants."""
    out = os.path.join(tmp, "check.png")
    run("heif-convert", path, out)
    with open(out, "rb") as f:
        img = read_png_rgb(f.read())
    assert (len(img[0]), len(img)) == (W, H), (path, len(img[0]), len(img))
    for (x, y), want in [((16, 12), RED), ((48, 12), GREEN), ((16, 36), BLUE), ((48, 36), YELLOW)]:
        got = img[y][x]
        assert all(abs(a - b) <= 12 for a, b in zip(got, want)), (path, (x, y), got, want)


def run(*args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)


def srgb_to_p3_matrix():
    def to_xyz(primaries):
        white = (0.3127, 0.3290)
        cols = [(x / y, 1.0, (1 - x - y) / y) for x, y in primaries]
        wx, wy = white
        w = (wx / wy, 1.0, (1 - wx - wy) / wy)
        p = [[cols[c][r] for c in range(3)] for r in range(3)]
        s = solve3(p, w)
        return [[p[r][c] * s[c] for c in range(3)] for r in range(3)]

    srgb = to_xyz([(0.64, 0.33), (0.30, 0.60), (0.15, 0.06)])
    p3 = to_xyz([(0.680, 0.320), (0.265, 0.690), (0.150, 0.060)])
    p3_inv = [solve3(p3, [1.0 if i == j else 0.0 for i in range(3)]) for j in range(3)]
    p3_inv = [[p3_inv[c][r] for c in range(3)] for r in range(3)]
    return [[sum(p3_inv[r][k] * srgb[k][c] for k in range(3)) for c in range(3)] for r in range(3)]


def solve3(m, v):
    """Solve m x = v for a 3x3 m (Cramer's rule)."""
    def det(a):
        return (a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1])
                - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
                + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]))
    d = det(m)
    out = []
    for c in range(3):
        a = [row[:] for row in m]
        for r in range(3):
            a[r][c] = v[r]
        out.append(det(a) / d)
    return out


def p3_photo(tmp):
    """examples/sample.jpg, decoded with djpeg and re-expressed in Display P3."""
    ppm = os.path.join(tmp, "sample.ppm")
    run("djpeg", "-pnm", "-outfile", ppm, os.path.join(HERE, "..", "..", "..", "examples", "sample.jpg"))
    with open(ppm, "rb") as f:
        data = f.read()
    fields, i = [], 0
    while len(fields) < 4:
        while data[i : i + 1].isspace():
            i += 1
        j = i
        while not data[j : j + 1].isspace():
            j += 1
        fields.append(data[i:j])
        i = j
    w, h = int(fields[1]), int(fields[2])
    pixels = data[i + 1 :]
    m = srgb_to_p3_matrix()
    decode = [((v / 255) / 12.92 if v / 255 <= 0.04045 else ((v / 255 + 0.055) / 1.055) ** 2.4) for v in range(256)]

    def encode(v):
        v = min(max(v, 0.0), 1.0)
        v = v * 12.92 if v <= 0.0031308 else 1.055 * v ** (1 / 2.4) - 0.055
        return int(round(v * 255))

    rows = []
    for y in range(h):
        row = []
        for x in range(w):
            k = 3 * (y * w + x)
            lin = [decode[c] for c in pixels[k : k + 3]]
            row.append(tuple(encode(sum(m[r][c] * lin[c] for c in range(3))) for r in range(3)))
        rows.append(row)
    return rows


def main():
    tmp = tempfile.mkdtemp()
    try:
        def encode(name, img, *opts, bits=8, icc=None):
            src = os.path.join(tmp, name + ".png")
            with open(src, "wb") as f:
                f.write(png(img, bits, icc))
            dst = os.path.join(tmp, name)
            run("heif-enc", "-q", "90", "--no-thumb-alpha", *opts, "-o", dst, src)
            with open(dst, "rb") as f:
                return f.read()

        def save(name, data):
            with open(os.path.join(HERE, name), "wb") as f:
                f.write(data)
            print("%-16s %5d bytes" % (name, len(data)))

        for n, (turns, axis) in sorted(ORIENTATIONS.items()):
            data = encode("o%d.heic" % n, stored_for(turns, axis))
            save("orient-%d.heic" % n, add_transforms(data, turns, axis))
            check_displayed(os.path.join(HERE, "orient-%d.heic" % n), tmp)
        save("plain.avif", encode("plain.avif", canonical(), "-A"))
        save("alpha.avif", encode("alpha.avif", with_transparent_right_half(canonical()), "-A"))
        # heif-enc 1.15 puts these code points in the HEVC bitstream (VUI) only;
        # the colr nclx box, which is what readers are meant to use, is added here.
        p3 = encode(
            "p3.heic",
            canonical(),
            "--colour_primaries", "12",
            "--transfer_characteristic", "13",
            "--matrix_coefficients", "6",
            "--full_range_flag", "1",
        )
        save("p3-nclx.heic", add_properties(p3, [(nclx(12, 13, 6, True), False)]))
        with open(ICC, "rb") as f:
            icc = f.read()
        save("adobe-icc.heic", encode("icc.heic", canonical(), icc=icc))
        save("10bit.heic", encode("ten.heic", canonical(), "-b", "10", bits=16))
        photo = encode(
            "p3-photo.heic",
            p3_photo(tmp),
            "--colour_primaries", "12",
            "--transfer_characteristic", "13",
            "--matrix_coefficients", "6",
            "--full_range_flag", "1",
        )
        save("p3-photo.heic", add_properties(photo, [(nclx(12, 13, 6, True), False)]))
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    sys.exit(main())

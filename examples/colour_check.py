#!/usr/bin/env python3
"""Colour error between a photo and what the recipient gets, both colour-managed.

    python3 examples/colour_check.py ORIGINAL RECEIVED

Each image is decoded with its embedded ICC profile (sRGB when it has none) and
converted to CIE L*a*b* by LittleCMS (Pillow's ImageCms); the images are averaged
over 8x8-pixel blocks so that compression noise cancels, and the CIE76 colour
difference of each block is reported as a mean and a 99th percentile. Needs
`pip install pillow numpy`. An independent cross-check of tests/photos.rs, which
computes the same measure with its own arithmetic.
"""
import io
import sys

import numpy as np
from PIL import Image, ImageCms


def lab_blocks(path):
    image = Image.open(path)
    image.load()
    icc = image.info.get("icc_profile")
    source = ImageCms.ImageCmsProfile(io.BytesIO(icc)) if icc else ImageCms.createProfile("sRGB")
    lab = ImageCms.profileToProfile(
        image.convert("RGB"), source, ImageCms.createProfile("LAB", 6500), outputMode="LAB"
    )
    a = np.asarray(lab).astype(np.float64)
    # Pillow stores a* and b* as signed bytes in unsigned storage.
    a[..., 0] *= 100.0 / 255.0
    a[..., 1:] = (a[..., 1:] + 128) % 256 - 128
    h, w = (a.shape[0] // 8) * 8, (a.shape[1] // 8) * 8
    return a[:h, :w].reshape(h // 8, 8, w // 8, 8, 3).mean(axis=(1, 3))


def main():
    original, received = (lab_blocks(p) for p in sys.argv[1:3])
    if original.shape != received.shape:
        sys.exit(f"sizes differ: {original.shape} vs {received.shape}")
    delta = np.sqrt(((original - received) ** 2).sum(axis=-1)).ravel()
    print(f"mean dE76 {delta.mean():.2f}  p99 {np.percentile(delta, 99):.2f}  blocks {delta.size}")


if __name__ == "__main__":
    main()

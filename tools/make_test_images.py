#!/usr/bin/env python3
"""Make the committed img2img / inpainting / ControlNet test images (numpy + Pillow only, no randomness):

  Tests/Fixtures/images/init-128.png   128x128 RGB: smooth gradients (R along x, G along y,
                                       B a radial cosine ripple) under a few solid shapes
  Tests/Fixtures/images/mask-128.png   128x128 L: white (255) = repaint, a filled circle of
                                       radius 32 centred at (46, 50), bbox (14, 18, 78, 82),
                                       19.6% of the pixels; black (0) elsewhere; binary, so
                                       mask_round does not matter
  Tests/Fixtures/images/control-160x128.png
                                       160x128 RGB ControlNet input, the oracle's own (shared/ref
                                       cases.py make_init_images, control_160x128.png, same pixels
                                       and bytes): black, a disc r 40 at (80, 64) (200, 60, 30)
                                       (pixels with dx^2 + dy^2 < 1600), a rectangle rows 20..49,
                                       cols 10..59 (30, 180, 90) drawn over it; 3 colours
  Tests/Fixtures/images/control-rgba-128x128.png
                                       128x128 RGBA ControlNet input for the composite-on-white
                                       path (the extension's HWC3: color * a/255 + 255 * (1 - a/255)
                                       in float32, truncated to uint8): transparent (alpha 0) blue
                                       background, an opaque disc r 36 at (64, 72) (200, 60, 30),
                                       a half-transparent (alpha 128) rectangle rows 16..55,
                                       cols 12..71 (30, 180, 90) over it, and an alpha ramp
                                       (alpha = min(255, 2 x), colour (20, 20, 20)) in rows 104..119

    REF_VENV/bin/python tools/make_test_images.py [--out-dir Tests/Fixtures/images]

The pixels depend only on numpy's float64 arithmetic and Pillow's ImageDraw rasteriser
(made with numpy 2.4.6, Pillow 13.0.0); the PNGs carry no text chunks or timestamps.
The circle is off-centre (up-left) on purpose. Any ~20% mask is wider than 128 - 2*32 - 2*10
(padding, mask-blur-4 spread), so for "only masked" the padded box always touches a border;
centred, it covers the whole image. From (46, 50): blurred bbox (4, 8, 88, 92), padded and
clipped (0, 0, 120, 124), expand_crop_region to 1:1 -> (0, 0, 124, 124): a real crop, the
expand branch that shifts off the left edge, and a 124 -> 128 LANCZOS resize (and back).
"""
import argparse
import os

import numpy as np
from PIL import Image, ImageDraw

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 128


def init_image():
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64) / (SIZE - 1)
    r = np.hypot(x - 0.35, y - 0.4)
    rgb = np.stack([
        40 + 180 * x,                               # red ramp, left to right
        30 + 170 * y,                               # green ramp, top to bottom
        128 + 90 * np.cos(2 * np.pi * 2.5 * r),     # blue ripple around (0.35, 0.4)
    ], axis=-1)
    img = Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)
    d.rectangle((12, 80, 47, 115), fill=(230, 200, 40))                 # yellow square, lower left
    d.ellipse((78, 14, 117, 53), fill=(200, 30, 60))                   # red disc, upper right
    d.polygon([(70, 118), (118, 118), (94, 74)], fill=(20, 40, 120))    # dark blue triangle, lower right
    d.rectangle((50, 40, 90, 52), fill=(245, 245, 245))                 # white bar through the mask area
    return img


def mask_image():
    m = Image.new("L", (SIZE, SIZE), 0)
    cx, cy, rad = 46, 50, 32
    ImageDraw.Draw(m).ellipse((cx - rad, cy - rad, cx + rad - 1, cy + rad - 1), fill=255)
    return m


def control_image():
    """The oracle's ControlNet input (shared/ref cases.py make_init_images: control_160x128.png)."""
    yy, xx = np.mgrid[0:128, 0:160]
    img = np.zeros((128, 160, 3), np.uint8)
    img[((xx - 80) ** 2 + (yy - 64) ** 2) < 40 ** 2] = (200, 60, 30)
    img[20:50, 10:60] = (30, 180, 90)
    return Image.fromarray(img)


def control_rgba_image():
    """Shapes with partial alpha: composited on white before the preprocessor."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    img = np.zeros((SIZE, SIZE, 4), np.uint8)
    img[..., 2] = 255                                   # blue under alpha 0: must not show
    disc = ((xx - 64) ** 2 + (yy - 72) ** 2) < 36 ** 2
    img[disc] = (200, 60, 30, 255)
    img[16:56, 12:72] = (30, 180, 90, 128)              # half transparent, over the disc's top
    img[104:120, :, :3] = 20                            # dark strip with an alpha ramp 0..254, 255
    img[104:120, :, 3] = np.minimum(255, 2 * xx[104:120]).astype(np.uint8)
    return Image.fromarray(img, "RGBA")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default=os.path.join(REPO, "Tests", "Fixtures", "images"))
    a = ap.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)
    for name, img in (("init-128.png", init_image()), ("mask-128.png", mask_image()),
                      ("control-160x128.png", control_image()), ("control-rgba-128x128.png", control_rgba_image())):
        p = os.path.join(a.out_dir, name)
        img.save(p, optimize=False)
        arr = np.array(img)
        extra = f", white fraction {np.mean(arr == 255):.3f}" if img.mode == "L" else ""
        print(f"{p}: {img.mode} {img.size[0]}x{img.size[1]}, {os.path.getsize(p)} bytes{extra}")


if __name__ == "__main__":
    main()

"""The guided workflow on the bundled film, from Python, with a scripted "user":

1. `write_keyframes` writes the first frame of every shot (grey) and the model's own colour;
2. the user paints a few colours onto the keyframe of the shot with Mickey at the wheel
   (here: a big brush over the backgrounds, a paint bucket in Mickey's outlined shorts, face
   and shoes, a brush round the life ring; each keeps the lightness, as a colour blend mode);
3. `colorize(..., guide=keys)` colours the film; that shot follows the painted colours.

Writes examples/guide_demo.jpg: the hand-coloured keyframe and frames later in its shot,
guided (top) and unguided (bottom).

    python examples/guide_demo.py [--weights FILE]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import av
import cv2
import numpy as np

import vidcolor
from vidcolor.config import JobConfig
from vidcolor.keyframes import write_keyframes

HERE = Path(__file__).resolve().parent
FILM = HERE / "steamboat_willie_1928.mp4"
KEYFRAME = "t000004.712.png"  # Mickey at the wheel: 4.7 s to 18.7 s
SHOW_S = (4.712, 8.0, 17.0)
# What an archivist might know or choose, in the 854x480 frame. Backgrounds with a big brush:
# (x0, y0, x1, y1), colour.
STROKES = [
    ((150, 8, 705, 62), (150, 190, 230)),  # sky
    ((150, 62, 705, 128), (110, 160, 80)),  # hills
    ((150, 360, 705, 470), (150, 100, 55)),  # deck planks
]
# A cartoon's figures are outlined: a paint bucket at a point inside the outline, (x, y), colour.
FILLS = [
    ((530, 330), (200, 40, 35)),  # shorts
    ((470, 220), (235, 195, 160)),  # face
    ((420, 400), (230, 185, 60)),  # shoes
    ((515, 425), (230, 185, 60)),
]
# The life ring's upper half has no outline against the wall (a bucket leaks there): a brush
# round it. Centre, outer and inner half-axes, colour.
RING = ((670, 258), (70, 66), (24, 21), (225, 95, 45))
BUCKET_TOLERANCE = 8  # grey levels between neighbouring pixels of one filled area


def paint(path: Path) -> None:
    """A colour brush and a paint bucket: each sets hue and saturation and keeps the pixel's
    lightness; the brush leaves the black outlines alone."""
    bgr = cv2.imread(str(path))
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    lab = cv2.cvtColor(bgr.astype(np.float32) / 255, cv2.COLOR_BGR2Lab)
    h, w = grey.shape
    yy, xx = np.mgrid[0:h, 0:w]
    (cx, cy), (ox, oy), (ix, iy), ring_colour = RING
    r_out = ((xx - cx) / ox) ** 2 + ((yy - cy) / oy) ** 2
    r_in = ((xx - cx) / ix) ** 2 + ((yy - cy) / iy) ** 2
    areas = []
    for (x0, y0, x1, y1), rgb in STROKES:
        box = np.zeros((h, w), bool)
        box[y0:y1, x0:x1] = True
        areas.append((box & (lab[..., 0] > 30), rgb))
    for (x, y), rgb in FILLS:
        mask = np.zeros((h + 2, w + 2), np.uint8)
        cv2.floodFill(grey.copy(), mask, (x, y), 0, BUCKET_TOLERANCE, BUCKET_TOLERANCE,
                      4 | cv2.FLOODFILL_MASK_ONLY | (255 << 8))
        areas.append((mask[1:-1, 1:-1] > 0, rgb))
    areas.append(((r_out <= 1) & (r_in >= 1) & (lab[..., 0] > 30), ring_colour))
    for mask, rgb in areas:
        lab[mask, 1:] = cv2.cvtColor(np.array([[rgb[::-1]]], np.float32) / 255, cv2.COLOR_BGR2Lab)[0, 0, 1:]
    cv2.imwrite(str(path), np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2BGR) * 255, 0, 255).round().astype(np.uint8))


def frames_at(path: Path, seconds: tuple[float, ...]) -> list[np.ndarray]:
    out, want = [], list(seconds)
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            if want and f.time >= want[0] - 1e-3:
                out.append(f.to_ndarray(format="rgb24"))
                want.pop(0)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--weights", default="")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp) / "keys"
        write_keyframes(FILM, keys, JobConfig(weights=args.weights))
        paint(keys / KEYFRAME)
        hand = cv2.imread(str(keys / KEYFRAME))[..., ::-1]
        guided, plain = Path(tmp) / "guided.mp4", Path(tmp) / "plain.mp4"
        vidcolor.colorize(FILM, guided, guide=str(keys), weights=args.weights)
        vidcolor.colorize(FILM, plain, weights=args.weights)
        rows = [[hand, *frames_at(guided, SHOW_S[1:])], frames_at(plain, SHOW_S)]
    labels = [["keyframe, coloured by hand", "guided, +3.3 s", "guided, +12.3 s"],
              ["no guide (keyframe)", "no guide, +3.3 s", "no guide, +12.3 s"]]
    tiles = []
    for row, names in zip(rows, labels):
        cells = []
        for img, name in zip(row, names):
            t = np.ascontiguousarray(cv2.resize(img, (427, 240), interpolation=cv2.INTER_AREA)[:, 70:357])
            cv2.putText(t, name, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 2, cv2.LINE_AA)
            cv2.putText(t, name, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
            cells.append(t)
        tiles.append(np.concatenate(cells, 1))
    cv2.imwrite(str(HERE / "guide_demo.jpg"), np.concatenate(tiles, 0)[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(f"wrote {HERE / 'guide_demo.jpg'}")


if __name__ == "__main__":
    main()

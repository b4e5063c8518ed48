"""The guided workflow on the bundled film, from Python, with a scripted "user":

1. `write_keyframes` writes the first frame of every shot (grey) and the model's own colour;
2. the user paints a few colours onto the keyframe of the shot with Mickey at the wheel
   (here: rectangles in a colour brush's blend mode, black outlines left alone);
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
# (x0, y0, x1, y1) in the 854x480 frame, colour: what an archivist might know or choose.
STROKES = [
    ((150, 8, 705, 62), (150, 190, 230)),  # sky
    ((150, 62, 705, 128), (110, 160, 80)),  # hills
    ((150, 360, 705, 470), (150, 100, 55)),  # deck planks
    ((455, 285, 560, 360), (200, 40, 35)),  # shorts
    ((600, 192, 715, 318), (225, 95, 45)),  # life ring
    ((425, 165, 520, 250), (235, 195, 160)),  # face
    ((380, 385, 455, 425), (230, 185, 60)),  # shoes
    ((480, 400, 555, 448), (230, 185, 60)),
]


def paint(path: Path) -> None:
    """A colour brush: each stroke sets hue and saturation, keeps the pixel's lightness, and
    leaves the black outlines alone."""
    bgr = cv2.imread(str(path))
    lab = cv2.cvtColor(bgr.astype(np.float32) / 255, cv2.COLOR_BGR2Lab)
    for (x0, y0, x1, y1), rgb in STROKES:
        ab = cv2.cvtColor(np.array([[rgb[::-1]]], np.float32) / 255, cv2.COLOR_BGR2Lab)[0, 0, 1:]
        region = lab[y0:y1, x0:x1]
        region[region[..., 0] > 30, 1:] = ab
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

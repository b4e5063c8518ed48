"""PSNR against colourfulness: the trade `--saturation` makes, drawn from `vidcolor eval` reports.

    python benchmarks/colour_curve.py --out benchmarks/quality/colour_curve.png \\
        --series "shipped, 144 px" /tmp/ev/s100 /tmp/ev/s130 ... --series "new, 192 px" ... \\
        --mark /tmp/ev/chosen

Each report folder holds report.json from `vidcolor eval --report DIR` (one saturation each, read
from its config). Two panels, dev clips and dev photos: PSNR gain over grey (dB) against
colourfulness as a share of the originals'. One line per series, points labelled with their
saturation; `--mark` circles the shipped default. Prints the table behind the picture.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import cv2
import numpy as np

W, H, PAD = 560, 420, 60
COLOURS = [(200, 80, 30), (40, 140, 40), (30, 60, 200), (150, 50, 150), (20, 150, 180),  # BGR
           (120, 120, 120), (0, 100, 200)]


def point(report: Path) -> dict[str, float]:
    r = json.loads((report / "report.json").read_text())
    out = {"saturation": r["config"]["saturation"], "working_size": r["config"]["working_size"],
           "max_frames": r.get("max_frames") or 0}
    if r.get("overall"):
        o = r["overall"]
        out["clips_gain"] = o["colorized"]["psnr"] - o["grey"]["psnr"]
        out["clips_colour"] = o["colorized"]["colorfulness"] / o["original"]["colorfulness"]
    for p in r.get("photos", []):
        out["photos_gain"] = p["colorized"]["psnr"] - p["grey"]["psnr"]
        out["photos_colour"] = p["colorized"]["colorfulness"] / p["original"]["colorfulness"]
    return out


def panel(series: dict[str, list[dict[str, float]]], key: str, title: str, mark: dict[str, float] | None,
          bars: tuple[float, float]) -> np.ndarray:
    img = np.full((H, W, 3), 255, np.uint8)
    pts = [(p[f"{key}_colour"], p[f"{key}_gain"]) for s in series.values() for p in s if f"{key}_gain" in p]
    if not pts:
        return img
    xs, ys = zip(*pts)
    x0, x1 = min(0.4, min(xs)) - 0.02, max(0.9, max(xs)) + 0.02
    y0, y1 = min(-0.2, min(ys)) - 0.1, max(ys) + 0.2

    def px(c: float, g: float) -> tuple[int, int]:
        x = PAD + (c - x0) / (x1 - x0) * (W - 1.5 * PAD)
        return int(x), int(H - PAD - (g - y0) / (y1 - y0) * (H - 1.5 * PAD))

    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.rectangle(img, px(x0, y0), px(x1, y1), (0, 0, 0), 1)
    for c in np.arange(0.4, x1, 0.1):
        cv2.putText(img, f"{c:.0%}", (px(c, y0)[0] - 12, H - PAD + 18), font, 0.4, (0, 0, 0), 1)
    for g in np.arange(np.ceil(y0 * 2) / 2, y1, 0.5):
        cv2.putText(img, f"{g:+.1f}", (8, px(x0, g)[1] + 4), font, 0.4, (0, 0, 0), 1)
        cv2.line(img, px(x0, g), px(x1, g), (230, 230, 230), 1)
    # The bar: at least 70 % colourfulness at at least this gain over grey.
    cv2.line(img, px(0.7, y0), px(0.7, y1), (150, 150, 255), 1)
    cv2.line(img, px(x0, bars[0] if key == "clips" else bars[1]), px(x1, bars[0] if key == "clips" else bars[1]),
             (150, 150, 255), 1)
    cv2.putText(img, title, (PAD, 22), font, 0.55, (0, 0, 0), 1)
    cv2.putText(img, "colourfulness / original's", (W // 2 - 90, H - 12), font, 0.45, (0, 0, 0), 1)
    cv2.putText(img, "dB over grey", (8, PAD - 18), font, 0.45, (0, 0, 0), 1)
    for i, (name, s) in enumerate(series.items()):
        col = COLOURS[i % len(COLOURS)]
        ps = sorted((p for p in s if f"{key}_gain" in p), key=lambda p: p["saturation"])
        for a, b in itertools.pairwise(ps):
            cv2.line(img, px(a[f"{key}_colour"], a[f"{key}_gain"]), px(b[f"{key}_colour"], b[f"{key}_gain"]), col, 2)
        for p in ps:
            q = px(p[f"{key}_colour"], p[f"{key}_gain"])
            cv2.circle(img, q, 4, col, -1)
            cv2.putText(img, f"{p['saturation']:g}", (q[0] + 5, q[1] - 5), font, 0.35, col, 1)
        # Bottom right: the points of a useful model lie high on the panel.
        cv2.putText(img, name, (W - 250, H - PAD - 10 - 18 * (len(series) - 1 - i)), font, 0.45, col, 1)
    if mark and f"{key}_gain" in mark:
        cv2.circle(img, px(mark[f"{key}_colour"], mark[f"{key}_gain"]), 11, (0, 0, 255), 2)
    return img


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--series", nargs="+", action="append", required=True, metavar=("NAME", "REPORT_DIR"),
                   help="a name, then report folders (one per saturation)")
    p.add_argument("--mark", type=Path, help="the report of the shipped default, circled")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    series = {s[0]: [point(Path(d)) for d in s[1:]] for s in args.series}
    mark = point(args.mark) if args.mark else None
    frames = {q["max_frames"] for s in series.values() for q in s}
    which = "all frames" if frames == {0} else f"first {max(frames)} frames"
    img = np.hstack([panel(series, "clips", f"dev clips (10, {which})", mark, (0.5, 1.2)),
                     panel(series, "photos", "dev photos (277)", mark, (0.5, 1.2))])
    if not cv2.imwrite(str(args.out), img):
        raise SystemExit(f"cannot write {args.out}")
    print("| series | saturation | clips: dB over grey | clips: colourfulness | photos: dB over grey "
          "| photos: colourfulness |")
    print("|---|---|---|---|---|---|")
    for name, s in series.items():
        for q in sorted(s, key=lambda q: q["saturation"]):
            print(f"| {name} | {q['saturation']:g} | " + " | ".join(
                (f"{q[k]:+.2f}" if "gain" in k else f"{q[k]:.0%}") if k in q else "-"
                for k in ("clips_gain", "clips_colour", "photos_gain", "photos_colour")) + " |")


if __name__ == "__main__":
    main()

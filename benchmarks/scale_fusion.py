"""Can a small network tell, pixel by pixel, whether the working size or twice it coloured better?

`second_scale` averages the generator's colour at the working size (1x) and at twice it (2x):
the dev photos gain, the dev clips lose (MODEL_CARD.md, session 13). Choosing the better of the
two per pixel with hindsight would add about +0.9 dB to both, so this measures whether the choice
can be learnt: a fusion CNN (~40k parameters; the grey frame and both predictions in, a per-pixel
weight of 1x out, at half resolution with a global-context branch) trained with L1 on training
photos, then measured on the dev photos and on frames of the dev clips against constant weights.

    python benchmarks/scale_fusion.py --train DATA/train --dev-photos DATA/dev_photos \\
        --clips DATA/eval/* --out benchmarks/quality/scale_fusion.json

A proxy of `vidcolor eval`, fast enough for a sweep: Lab composition at the working size (144 px
short side), not at full resolution; 12 evenly spaced frames a clip, no temporal smoothing; the
clips' numbers are means over clips of each clip's mean, as in eval. Training photos are shrunk
to `--base` px first: at their own 144 px the generator has memorised them at 1x (1x beats 2x
there by 0.005 in L1, on the dev photos they tie), and a fusion learns only that.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from vidcolor.color import lab_to_rgb, quantize_luma, rgb_to_ab, rgb_to_luma, working_size
from vidcolor.data import list_images, load_image_cache
from vidcolor.metrics import colorfulness, psnr
from vidcolor.model import Colorizer

log = logging.getLogger("scale_fusion")
Sample = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # grey, true ab, ab at 1x, ab at 2x


class Fusion(nn.Module):
    """(grey, ab 1x, ab 2x) -> the per-pixel mix w * ab1 + (1 - w) * ab2, and w."""

    def __init__(self, c: int = 24) -> None:
        super().__init__()
        self.inp = nn.Sequential(nn.Conv2d(7, c, 3, padding=1), nn.ReLU())
        self.d1 = nn.Sequential(nn.Conv2d(c, c, 3, 2, 1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1), nn.ReLU())
        self.d2 = nn.Sequential(nn.Conv2d(c, 2 * c, 3, 2, 1), nn.ReLU(),
                                nn.Conv2d(2 * c, 2 * c, 3, padding=2, dilation=2), nn.ReLU())
        self.glob = nn.Linear(2 * c, 2 * c)
        self.out = nn.Sequential(nn.Conv2d(5 * c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, 1, 3, padding=1))

    def forward(self, y: torch.Tensor, a1: torch.Tensor, a2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([y, a1, a2, a1.norm(dim=1, keepdim=True), a2.norm(dim=1, keepdim=True)], 1)
        full = x.shape[2:]
        f0 = self.inp(F.avg_pool2d(x, 2, ceil_mode=True))  # a weight map needs context, not detail
        f2 = self.d2(self.d1(f0))
        g = F.relu(self.glob(f2.mean((2, 3))))[..., None, None].expand_as(f2)
        u = F.interpolate(torch.cat([f2, g], 1), size=f0.shape[2:], mode="bilinear", align_corners=False)
        w = torch.sigmoid(F.interpolate(self.out(torch.cat([u, f0], 1)), size=full, mode="bilinear",
                                        align_corners=False))
        return w * a1 + (1 - w) * a2, w


def both_scales(c: Colorizer, grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The generator's ab at 1x and at 2x (brought back by area averaging, as second_scale does)."""
    a1 = c.predict(grey, pad_to=len(grey))
    avg = c.predict(grey, pad_to=len(grey), second_scale=2.0)
    return a1, 2.0 * avg - a1


def sample(c: Colorizer, rgb: np.ndarray) -> Sample:
    y = quantize_luma(rgb_to_luma(rgb, "bt601")).astype(np.float32)
    a1, a2 = both_scales(c, y[None])
    return y, rgb_to_ab(rgb), a1[0], a2[0]


def training_set(c: Colorizer, dirs: Sequence[str], n: int, base: int, cache: Path) -> list[np.ndarray]:
    photos = load_image_cache(dirs, 144, cache)
    idx = np.sort(np.random.default_rng(17).permutation(len(photos))[:n])
    ys, ts, a1s, a2s = [], [], [], []
    for k in range(0, n, 32):
        rgb = [cv2.resize(p.astype(np.float32) / 255, (base, base), interpolation=cv2.INTER_AREA)
               for p in photos[idx[k : k + 32]]]
        y = np.stack([quantize_luma(rgb_to_luma(r, "bt601")) for r in rgb]).astype(np.float32)
        a1, a2 = both_scales(c, y)
        ys.append(y)
        ts.append(np.stack([rgb_to_ab(r) for r in rgb]))
        a1s.append(a1)
        a2s.append(a2)
    return [np.concatenate(v).astype(np.float16) for v in (ys, ts, a1s, a2s)]


def train_fusion(data: list[np.ndarray], epochs: int, batch: int = 32) -> Fusion:
    torch.manual_seed(0)
    y, t, a1, a2 = (torch.from_numpy(v.astype(np.float32)) for v in data)
    y = y[:, None] * 2 - 1
    t, a1, a2 = (v.permute(0, 3, 1, 2) for v in (t, a1, a2))
    net = Fusion()
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    steps = epochs * (len(y) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps)
    for epoch in range(epochs):
        perm = torch.randperm(len(y))
        losses, mean_l1, one_l1 = [], [], []
        for k in range(0, len(y) - batch + 1, batch):
            i = perm[k : k + batch]
            views = [v[i] for v in (y, t, a1, a2)]
            if torch.rand(1) < 0.5:
                views = [v.flip(3) for v in views]
            pred, _ = net(views[0], views[2], views[3])
            loss = (pred - views[1]).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            mean_l1.append((0.5 * (views[2] + views[3]) - views[1]).abs().mean().item())
            one_l1.append((views[2] - views[1]).abs().mean().item())
        log.info("epoch %d: L1 fused %.5f, halves %.5f, 1x alone %.5f", epoch, np.mean(losses),
                 np.mean(mean_l1), np.mean(one_l1))
    return net.eval()


def at_working_size(c: Colorizer, bgr: np.ndarray) -> Sample:
    """A dev photo or frame (BGR uint8) shrunk to the 144-px working size, and its sample."""
    size = working_size(bgr.shape[1], bgr.shape[0], 144)
    rgb = cv2.cvtColor(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    return sample(c, rgb.astype(np.float32) / 255)


def dev_photos(c: Colorizer, folder: str) -> list[tuple[int, Sample]]:
    return [(0, at_working_size(c, cv2.imread(str(f)))) for f in list_images([folder])]


def clip_frames(c: Colorizer, clips: Sequence[str], per_clip: int = 12) -> list[tuple[int, Sample]]:
    out = []
    for ci, path in enumerate(clips):
        cap = cv2.VideoCapture(path)
        frames = []
        while (got := cap.read())[0]:
            frames.append(got[1])
        for j in np.linspace(0, len(frames) - 1, per_clip).round().astype(int):
            out.append((ci, at_working_size(c, frames[j])))
    return out


def score(items: list[tuple[int, Sample]], abs_: Sequence[np.ndarray], saturation: float) -> dict:
    """dB over grey and colourfulness against the originals' of each item's colour `abs_`, per
    group (clip) then averaged."""
    rows: dict[int, list[tuple[float, float, float]]] = {}
    for (group, s), ab in zip(items, abs_):
        y, t = s[0].astype(np.float32), s[1].astype(np.float32)
        truth, grey, pred = lab_to_rgb(y, t), lab_to_rgb(y, 0 * t), lab_to_rgb(y, ab * saturation)
        rows.setdefault(group, []).append((psnr(pred, truth) - psnr(grey, truth), colorfulness(pred),
                                           colorfulness(truth)))
    per = [np.array(v) for v in rows.values()]
    return {"gain_db": float(np.mean([r[:, 0].mean() for r in per])),
            "colour": float(np.mean([r[:, 1].mean() / r[:, 2].mean() for r in per])),
            "per_group_db": [round(float(r[:, 0].mean()), 2) for r in per]}


def _inputs(s: Sample) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    y = torch.from_numpy(s[0].astype(np.float32))[None, None] * 2 - 1
    a1, a2 = (torch.from_numpy(a.astype(np.float32)).permute(2, 0, 1)[None] for a in s[2:])
    return y, a1, a2


@torch.no_grad()
def fused(net: Fusion, s: Sample) -> tuple[np.ndarray, float]:
    """The learnt mix of one sample, and its mean weight on 1x."""
    ab, w = net(*_inputs(s))
    return ab[0].permute(1, 2, 0).numpy(), float(w.mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", nargs="+", required=True, help="training photo folders")
    p.add_argument("--dev-photos", required=True)
    p.add_argument("--clips", nargs="+", required=True)
    p.add_argument("--weights", default="vidcolor/weights/generator.pt")
    p.add_argument("--photos", type=int, default=8000, help="training photos for the fusion")
    p.add_argument("--base", type=int, default=100, help="training photos shrunk to this side (px)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--saturation", type=float, default=1.27)
    p.add_argument("--cache", default=".cache")
    p.add_argument("--out", default="benchmarks/quality/scale_fusion.json")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(2)
    c = Colorizer.from_file(a.weights, "cpu", "bf16", backend="openvino")
    t0 = time.time()
    net = train_fusion(training_set(c, a.train, a.photos, a.base, Path(a.cache)), a.epochs)
    sets = {"dev photos": dev_photos(c, a.dev_photos), "dev clip frames": clip_frames(c, a.clips)}
    mixes: dict[str, Callable[[Sample], np.ndarray]] = {
        f"constant, {w:g} of 1x": (lambda s, w=w: w * s[2].astype(np.float32) + (1 - w) * s[3].astype(np.float32))
        for w in (1.0, 0.83, 0.7, 0.5, 0.0)}
    result: dict = {"config": vars(a), "rows": []}
    for name, items in sets.items():
        learnt = [fused(net, s) for _, s in items]
        colours = {mix_name: [mix(s) for _, s in items] for mix_name, mix in mixes.items()}
        colours["learnt fusion"] = [ab for ab, _ in learnt]
        for mix_name, abs_ in colours.items():
            r = score(items, abs_, a.saturation)
            row = {"set": name, "mix": mix_name, **r}
            if mix_name == "learnt fusion":
                row["mean_weight_1x"] = float(np.mean([w for _, w in learnt]))
            result["rows"].append(row)
            print(f"{name:16s} {mix_name:22s} {r['gain_db']:+.3f} dB  {100 * r['colour']:.1f} %  "
                  + " ".join(f"{d:+.2f}" for d in r["per_group_db"][:10]), flush=True)
    result["seconds"] = round(time.time() - t0)
    Path(a.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

"""Training data: colour photos -> (grey input as a video carries it, Lab ab target).

Photos are decoded once into a uint8 cache (N x S x S x 3) so each training step only crops,
flips, degrades and converts; a background thread assembles batches while torch computes.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from .color import luma_to_model_input, quantize_luma, rgb_to_ab, rgb_to_luma

log = logging.getLogger(__name__)

IMAGE_EXTS = {".webp", ".jpg", ".jpeg", ".png", ".bmp"}


def list_images(dirs: Sequence[str | Path]) -> list[Path]:
    files: list[Path] = []
    for d in dirs:
        files += sorted(p for p in Path(d).rglob("*") if p.suffix.lower() in IMAGE_EXTS)
    return files


def _square(img: np.ndarray, side: int) -> np.ndarray:
    """Resize so the short side is `side`, then centre-crop a square."""
    h, w = img.shape[:2]
    s = side / min(h, w)
    nh, nw = max(side, round(h * s)), max(side, round(w * s))
    img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    y0, x0 = (nh - side) // 2, (nw - side) // 2
    return img[y0 : y0 + side, x0 : x0 + side]


def load_image_cache(dirs: Sequence[str | Path], side: int, cache_dir: Path) -> np.ndarray:
    """All photos as an RGB uint8 array (N, side, side, 3), cached on disk as .npy."""
    files = list_images(dirs)
    if not files:
        raise FileNotFoundError(f"no images found in {list(map(str, dirs))}")
    key = hashlib.sha256(("\n".join(map(str, files)) + f"|{side}").encode()).hexdigest()[:16]
    cache = cache_dir / f"photos_{side}_{key}.npy"
    if cache.exists():
        return np.load(cache, mmap_mode="r")
    cache_dir.mkdir(parents=True, exist_ok=True)
    out = np.empty((len(files), side, side, 3), np.uint8)
    n = 0
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            log.warning("skipping unreadable image %s", f)
            continue
        out[n] = cv2.cvtColor(_square(img, side), cv2.COLOR_BGR2RGB)
        n += 1
    out = out[:n]
    tmp = cache.parent / f"{cache.stem}.{os.getpid()}.part.npy"  # two runs may build it at once
    np.save(tmp, out)
    tmp.replace(cache)
    log.info("cached %d photos at %dpx in %s", n, side, cache)
    return np.load(cache, mmap_mode="r")  # as a later run gets it: batch workers open the file


def ab_rarity_weights(photos: np.ndarray, strength: float, bins: int = 32, sample: int = 2000,
                      seed: int = 0) -> np.ndarray:
    """Per-ab-bin loss weights that favour rare colours (Zhang et al. 2016's class rebalancing,
    applied to the regression loss): w = 1 / (strength * p + (1 - strength) / Q) over the smoothed
    empirical ab distribution p of the photos (Q = bins in use), normalised so that the mean
    weight over the photos' pixels is 1. Without it, L1 settles on the common (brownish,
    desaturated) colours; strength 0 gives all ones. Returns (bins, bins) float32, indexed
    [a bin, b bin] over ab / AB_SCALE in [-1, 1]."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(photos), min(sample, len(photos)), replace=False))
    # Each photo shrunk to 36x36 (colour statistics need no detail), all converted at once.
    small = np.concatenate([cv2.resize(np.asarray(photos[i]), (36, 36), interpolation=cv2.INTER_AREA)
                            for i in idx])
    ab = rgb_to_ab(small.astype(np.float32) / 255.0).reshape(-1, 2)
    hist, _, _ = np.histogram2d(ab[:, 0], ab[:, 1], bins=bins, range=[[-1, 1], [-1, 1]])
    p = cv2.GaussianBlur(hist / hist.sum(), (0, 0), 1.0)  # Zhang smooths with sigma 5 of 10-wide bins
    used = p > 1e-6
    w = np.zeros_like(p)
    w[used] = 1.0 / (strength * p[used] / p[used].sum() + (1.0 - strength) / used.sum())
    w[~used] = w[used].max()  # colours the sample never had: as rare as the rarest seen
    w /= (hist * w).sum() / hist.sum()  # mean weight 1 over the sampled pixels: same loss scale
    return w.astype(np.float32)


def degrade_luma(y: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Damage that archival film has: soft contrast, blur, grain, scratches. y in [0, 1]."""
    if strength <= 0:
        return y
    if rng.random() < 0.4 * strength:  # faded / soft contrast, lifted blacks
        c = rng.uniform(0.6, 1.0)
        y = 0.5 + (y - 0.5) * c + rng.uniform(-0.08, 0.08)
    if rng.random() < 0.3 * strength:
        y = cv2.GaussianBlur(y, (0, 0), rng.uniform(0.4, 1.3))
    if rng.random() < 0.4 * strength:  # film grain
        y = y + rng.normal(0.0, rng.uniform(0.01, 0.05), y.shape).astype(np.float32)
    if rng.random() < 0.2 * strength:  # vertical scratches, bright or dark
        for _ in range(rng.integers(1, 4)):
            x = int(rng.integers(0, y.shape[1]))
            y[:, x : x + 1] = rng.choice([0.05, 0.95])
    return np.clip(y, 0.0, 1.0).astype(np.float32)


def make_pair(rgb_u8: np.ndarray, rng: np.random.Generator, degrade: float) -> tuple[np.ndarray, np.ndarray]:
    """One RGB crop -> (model input 1xHxW, ab target 2xHxW), float32."""
    rgb = rgb_u8.astype(np.float32) / 255.0
    matrix = "bt709" if rng.random() < 0.5 else "bt601"  # videos declare either
    y = quantize_luma(rgb_to_luma(rgb, matrix))
    y = degrade_luma(y, rng, degrade)
    x = luma_to_model_input(y)[None]
    ab = rgb_to_ab(rgb).transpose(2, 0, 1)
    return x, np.ascontiguousarray(ab)


MAX_POINTS = 200
POINT_SIZES = (1, 2, 3, 4, 5)  # side of a hinted patch, px at the 128-144 px training scale


def point_guide(ab: np.ndarray, points: np.ndarray, size: int) -> np.ndarray:
    """Hints at `points` ((K, 2) rows of y, x): each a size x size patch holding the mean true
    ab under it, confidence 1 (a user picking one colour for a small area). ab: (2, H, W)."""
    _, h, w = ab.shape
    guide = np.zeros((3, h, w), np.float32)
    r0 = size // 2
    for y, x in points:
        y0, x0 = max(0, y - r0), max(0, x - r0)
        y1, x1 = min(h, y0 + size), min(w, x0 + size)
        mean = ab[:, y0:y1, x0:x1].reshape(2, -1).mean(1)
        guide[:2, y0:y1, x0:x1] = mean[:, None, None]
        guide[2, y0:y1, x0:x1] = 1.0
    guide[:2] *= guide[2:3]
    return guide


def dense_guide(ab: np.ndarray, rng: np.random.Generator, partial: float) -> np.ndarray:
    """A keyframe's colour carried along imperfect optical flow: blurred, shifted a few pixels,
    confidence below 1, and with probability `partial` covering only part of the frame
    (occlusions, new content). ab: (2, H, W); returns (3, H, W): ab * conf, conf."""
    _, h, w = ab.shape
    src = cv2.GaussianBlur(ab.transpose(1, 2, 0), (0, 0), rng.uniform(0.3, 2.5)).transpose(2, 0, 1)
    src = np.roll(src, tuple(rng.integers(-3, 4, 2)), axis=(1, 2))
    conf = np.full((h, w), rng.uniform(0.3, 1.0), np.float32)
    if rng.random() < partial:
        y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
        y1, x1 = rng.integers(y0 + h // 4, h + 1), rng.integers(x0 + w // 4, w + 1)
        keep = np.zeros_like(conf)
        keep[y0:y1, x0:x1] = 1.0
        conf *= keep
    return np.concatenate([src * conf, conf[None]]).astype(np.float32)


def sample_guide(ab: np.ndarray, rng: np.random.Generator, none: float, dense: float) -> np.ndarray:
    """A random colour guide drawn from the true ab (2, H, W), as Zhang et al. 2017 train: none
    at all, a dense guide (a keyframe's colour carried along imperfect optical flow: blurred,
    shifted a few pixels, partly missing, confidence below 1), or 1..200 hinted points,
    log-uniform (few hints are the common case). Returns (3, H, W): ab * conf, conf."""
    _, h, w = ab.shape
    r = rng.random()
    if r < none:
        return np.zeros((3, h, w), np.float32)
    if r < none + dense:
        return dense_guide(ab, rng, partial=0.6)
    n = int(np.exp(rng.uniform(0.0, np.log(MAX_POINTS + 1))))
    pts = np.stack([rng.integers(0, h, n), rng.integers(0, w, n)], 1)
    return point_guide(ab, pts, int(rng.choice(POINT_SIZES)))


def random_resized_crop(img: np.ndarray, out: int, zoom_range: tuple[float, float],
                        rng: np.random.Generator) -> np.ndarray:
    """A random view of `img` (S x S x 3) resized to out x out, at a zoom drawn log-uniform from
    `zoom_range` (1 = an `out` px crop at the photo's own scale, 1.5 = objects half as large again,
    0.5 = half as large), its aspect jittered up to 4:3 either way. Each epoch then shows new
    views, and objects at other sizes: larger, the scale the ImageNet encoder learned at 224 px;
    smaller, the scale of a wide video shot at the working size (vtest's lawn, grey at 144 px,
    turns green when the same frame is shown at 288). A view larger than the photo is the whole
    photo shrunk and mirrored at its edges to fill the crop."""
    side = img.shape[0]
    zoom = math.exp(rng.uniform(math.log(zoom_range[0]), math.log(zoom_range[1])))
    aspect = math.exp(rng.uniform(-math.log(4 / 3), math.log(4 / 3)))
    want_w, want_h = out / zoom * math.sqrt(aspect), out / zoom / math.sqrt(aspect)
    w, h = round(min(side, want_w)), round(min(side, want_h))
    y0, x0 = rng.integers(0, side - h + 1), rng.integers(0, side - w + 1)
    view = img[y0 : y0 + h, x0 : x0 + w]
    # Where the view wanted more than the photo has, the photo keeps its share of the crop.
    ow, oh = min(out, round(out * w / want_w)), min(out, round(out * h / want_h))
    interp = cv2.INTER_AREA if h > oh and w > ow else cv2.INTER_LINEAR
    view = cv2.resize(view, (ow, oh), interpolation=interp)
    if (ow, oh) == (out, out):
        return view
    top, left = (out - oh) // 2, (out - ow) // 2
    return cv2.copyMakeBorder(view, top, out - oh - top, left, out - ow - left, cv2.BORDER_REFLECT_101)


@dataclass
class MatchRefs:
    """The references of a batch's feature-matched samples, whose guides the training loop
    completes (it has the encoder): sample index, the reference's input (1, H, W) and ab
    (2, H, W), and whether to gate as a reference photo (strict) or a keyframe."""

    index: list[int]
    x: np.ndarray
    ab: np.ndarray
    strict: list[bool]


Batch = tuple[np.ndarray, np.ndarray, np.ndarray | None, MatchRefs | None]


class BatchMaker:
    """Makes one (input, target, guide, match refs) batch per call, from random crops and flips
    of the photos, seeded. `guide`: None for unguided training, else (none, dense) shares for
    sample_guide; `matched` = (share, other share): samples whose guide comes from feature
    matching (see TrainConfig.guide_matched), returned with their references in MatchRefs."""

    def __init__(self, photos: np.ndarray, crop: int, batch: int, degrade: float, seed: int,
                 guide: tuple[float, float] | None = None, zoom: tuple[float, float] = (1.0, 1.0),
                 matched: tuple[float, float] = (0.0, 0.0)) -> None:
        self.photos, self.crop, self.batch, self.degrade = photos, crop, batch, degrade
        self.guide = guide
        self.zoom = zoom
        self.matched = matched
        self.rng = np.random.default_rng(seed)

    def _view(self, i: int, zoom: tuple[float, float]) -> np.ndarray:
        """A random crop of photo i (at `zoom`), flipped half the time."""
        if zoom == (1.0, 1.0):
            side = self.photos.shape[1]
            y0, x0 = self.rng.integers(0, side - self.crop + 1, 2)
            img = np.asarray(self.photos[i, y0 : y0 + self.crop, x0 : x0 + self.crop])
        else:
            img = random_resized_crop(np.asarray(self.photos[i]), self.crop, zoom, self.rng)
        return img[:, ::-1] if self.rng.random() < 0.5 else img

    def __call__(self) -> Batch:
        n = len(self.photos)
        xs, ys, gs = [], [], []
        r_index: list[int] = []
        r_x: list[np.ndarray] = []
        r_ab: list[np.ndarray] = []
        r_strict: list[bool] = []
        for k, i in enumerate(self.rng.integers(0, n, self.batch)):
            x, ab = make_pair(self._view(int(i), self.zoom), self.rng, self.degrade)
            xs.append(x)
            ys.append(ab)
            if self.guide is None:
                continue
            if self.rng.random() < self.matched[0]:
                # The keyframe or reference: another view of the same photo (moved, zoomed, maybe
                # mirrored), or another photo. Flow covers part of a keyframe's frame half the time.
                other = self.rng.random() < self.matched[1]
                j = int(self.rng.integers(0, n)) if other else int(i)
                rx, rab = make_pair(self._view(j, (0.8, 1.4)), self.rng, self.degrade)
                r_index.append(k)
                r_x.append(rx)
                r_ab.append(rab)
                r_strict.append(bool(self.rng.random() < 0.5))
                flow = not other and self.rng.random() < 0.5
                gs.append(dense_guide(ab, self.rng, partial=1.0) if flow else np.zeros((3, *ab.shape[1:]), np.float32))
            else:
                gs.append(sample_guide(ab, self.rng, *self.guide))
        matched = MatchRefs(r_index, np.stack(r_x), np.stack(r_ab), r_strict) if r_index else None
        return np.stack(xs), np.stack(ys), (np.stack(gs) if gs else None), matched


class _WorkerBatches(torch.utils.data.IterableDataset):
    """BatchMaker in a DataLoader worker process, each worker seeded apart (seed + worker id).
    The photos travel as their cache file's name and each worker maps the file: the page cache
    holds one copy for all of them."""

    def __init__(self, maker: BatchMaker, seed: int) -> None:
        self.photos_file = str(maker.photos.filename)
        self.maker = copy.copy(maker)
        self.maker.photos = np.empty((0,), np.uint8)  # not pickled to the workers
        self.seed = seed

    def __iter__(self) -> Iterator[Batch]:
        info = torch.utils.data.get_worker_info()
        cv2.setNumThreads(1)  # the workers are the parallelism
        self.maker.photos = np.load(self.photos_file, mmap_mode="r")
        self.maker.rng = np.random.default_rng([self.seed, 0 if info is None else info.id])
        while True:
            yield self.maker()


class PhotoBatches:
    """Infinite stream of BatchMaker's batches, made ahead while torch computes: by one
    background thread (`workers` 0: enough for a CPU, where torch takes the cores), or by
    `workers` processes (a GPU eats batches faster than one core makes them)."""

    def __init__(self, photos: np.ndarray, crop: int, batch: int, degrade: float, seed: int,
                 prefetch: int = 4, guide: tuple[float, float] | None = None,
                 zoom: tuple[float, float] = (1.0, 1.0), matched: tuple[float, float] = (0.0, 0.0),
                 workers: int = 0) -> None:
        self.maker = BatchMaker(photos, crop, batch, degrade, seed, guide, zoom, matched)
        self._stop = threading.Event()
        self._loader: Iterator[Batch] | None = None
        if workers > 0:
            if not isinstance(photos, np.memmap):
                raise ValueError("batch workers read the photos from their cache file (load_image_cache)")
            # Workers forked from a process whose OpenCV thread pool has run deadlock in their
            # first cv2 call (measured: cv2.setNumThreads hung): start them from a fresh server.
            loader = torch.utils.data.DataLoader(_WorkerBatches(self.maker, seed), batch_size=None,
                                                 num_workers=workers, prefetch_factor=prefetch,
                                                 collate_fn=_shareable, multiprocessing_context="forkserver")
            self._loader = iter(loader)
            return
        self._q: queue.Queue[Batch] = queue.Queue(prefetch)
        self._thread = threading.Thread(target=self._fill, daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        while not self._stop.is_set():
            b = self.maker()
            while not self._stop.is_set():
                try:
                    self._q.put(b, timeout=0.5)
                    break
                except queue.Full:
                    continue

    def __iter__(self) -> Iterator[Batch]:
        while True:
            yield _from_shared(next(self._loader)) if self._loader is not None else self._q.get()

    def close(self) -> None:
        self._stop.set()
        self._loader = None  # the DataLoader's iterator ends its worker processes when dropped


def _shareable(batch: Batch) -> Any:
    """A batch as torch tensors, which cross from a worker in shared memory (numpy arrays would
    be pickled through a pipe: ~50 MB a batch of 128)."""
    x, y, g, refs = batch
    t = torch.from_numpy
    r = None if refs is None else (refs.index, t(refs.x), t(refs.ab), refs.strict)
    return t(x), t(y), None if g is None else t(g), r


def _from_shared(batch: Any) -> Batch:
    x, y, g, r = batch
    refs = None if r is None else MatchRefs(list(r[0]), r[1].numpy(), r[2].numpy(), list(r[3]))
    return x.numpy(), y.numpy(), None if g is None else g.numpy(), refs

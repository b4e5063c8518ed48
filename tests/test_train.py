"""Training: the grey input matches the video path, runs resume, seeds reproduce, exports load."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vidcolor.color import luma_to_model_input, normalize_y, rgb_to_luma
from vidcolor.config import TrainConfig, load_config
from vidcolor.data import make_pair, random_resized_crop
from vidcolor.errors import ConfigError
from vidcolor.model import load_generator
from vidcolor.train import train


def test_training_input_equals_decoder_input() -> None:
    """Decision 3: the model sees the same numbers from a photo as from a video's Y plane."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    import av

    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv444p", dst_colorspace="itu601",
                                                                     dst_color_range="MPEG")
    y_plane = np.frombuffer(frame.planes[0], np.uint8).reshape(16, -1)[:, :16]
    video_input = luma_to_model_input(normalize_y(y_plane, 8, full_range=False))
    photo_rng = np.random.default_rng(1)
    # make_pair picks BT.601 or BT.709 at random; find a draw that picked 601 with no degradation.
    x, ab = make_pair(rgb, photo_rng, degrade=0.0)
    x709 = luma_to_model_input(rgb_to_luma(rgb / 255.0, "bt709"))
    x601 = luma_to_model_input(rgb_to_luma(rgb / 255.0, "bt601"))
    assert ab.shape == (2, 16, 16)
    picked = x[0]
    assert np.allclose(picked, x601, atol=1 / 219 * 2 + 1e-6) or np.allclose(picked, x709, atol=1 / 219 * 2 + 1e-6)
    # swscale's 8-bit luma and ours agree to one code value (rounding)
    assert np.abs(video_input - x601).max() <= 2 / 219 + 1e-6


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    d = tmp_path / "photos"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        img = cv2.GaussianBlur(rng.integers(0, 256, (40, 52, 3), dtype=np.uint8), (0, 0), 3)
        cv2.imwrite(str(d / f"p{i}.webp"), img)
    return d


def _cfg(photos: Path, out: Path, steps: int) -> TrainConfig:
    return load_config(TrainConfig, None, {
        "data": [str(photos)], "out_dir": str(out), "cache_dir": str(out.parent / "cache"), "photo_side": 36,
        "crop": 32, "batch_size": 2, "steps": steps, "nogan_steps": 2, "ngf": 4, "num_downs": 5, "ndf": 4,
        "log_every": 1, "checkpoint_every": 2, "snapshot_every": 4, "threads": 1})


def _losses(out: Path) -> list[list[str]]:
    with open(out / "log.csv") as f:
        return [row[3:] for row in csv.reader(f)][1:]


def test_train_resume_and_reproduce(tmp_path: Path, photos: Path) -> None:
    a = tmp_path / "a"
    train(_cfg(photos, a, 3))
    train(_cfg(photos, a, 6))  # resumes from step 3
    rows = _losses(a)
    assert len(rows) == 6
    assert float(rows[-1][1]) > 0  # GAN phase ran after the L1-only warm start
    b = tmp_path / "b"
    train(_cfg(photos, b, 3))
    assert _losses(b)[:3] == rows[:3]  # same seed, same numbers
    net, meta = load_generator(a / "generator_latest.pt")
    assert meta["steps"] == 6 and net.cfg.ngf == 4
    assert (a / "generator_0000004.pt").exists()


def test_train_from_exported_generator(tmp_path: Path, photos: Path) -> None:
    a = tmp_path / "a"
    train(_cfg(photos, a, 2))
    b = tmp_path / "b"
    cfg = dataclasses.replace(_cfg(photos, b, 4), init_generator=str(a / "generator_latest.pt"), start_step=2)
    train(cfg)
    assert len(_losses(b)) == 2  # steps 3 and 4 only
    _, meta = load_generator(b / "generator_latest.pt")
    assert meta["steps"] == 4


def test_train_config_validated() -> None:
    with pytest.raises(ConfigError, match="multiple"):
        load_config(TrainConfig, None, {"crop": 100, "num_downs": 7})


def test_lr_schedule() -> None:
    from vidcolor.train import lr_at

    cfg = load_config(TrainConfig, None, {"lr": 1e-3, "steps": 10, "lr_decay_from": 6})
    assert [lr_at(cfg, s) for s in (0, 6)] == [1e-3, 1e-3]
    assert lr_at(cfg, 8) == pytest.approx(5e-4) and lr_at(cfg, 10) == 0.0
    assert lr_at(load_config(TrainConfig, None, {"lr": 1e-3}), 10**6) == 1e-3  # no decay by default
    with pytest.raises(ConfigError, match="lr_decay_from"):
        load_config(TrainConfig, None, {"steps": 10, "lr_decay_from": 10})
    with pytest.raises(ConfigError, match="ema"):
        load_config(TrainConfig, None, {"ema": 1.0})


def test_weight_average_exported_and_resumed(tmp_path: Path, photos: Path) -> None:
    """With ema > 0 the exports hold the running average, and a resumed run continues it."""
    a = tmp_path / "a"
    cfg = dataclasses.replace(_cfg(photos, a, 3), ema=0.9, nogan_steps=100, checkpoint_every=1)
    train(cfg)
    st3 = torch.load(a / "state.pt", weights_only=False)
    train(dataclasses.replace(cfg, steps=4))
    st4 = torch.load(a / "state.pt", weights_only=False)
    exported, _ = load_generator(a / "generator_latest.pt")
    moved = 0
    for k, v in st4["ema"].items():
        if v.is_floating_point():
            want = st3["ema"][k] * 0.9 + st4["g"][k] * 0.1
            assert torch.allclose(v, want, atol=1e-6), k
            moved += int(not torch.equal(v, st4["g"][k]))
            assert torch.allclose(exported.state_dict()[k].float(), v, atol=2e-3 * (1 + v.abs().max().item())), k
    assert moved > 0  # the average is not G itself


def test_int8_export(tmp_path: Path, tiny_weights: Path) -> None:
    """`vidcolor export` writes int8 kernels + per-channel scales: smaller, same colours."""
    from vidcolor.cli import main
    from vidcolor.errors import WeightsError
    from vidcolor.model import Colorizer

    q = tmp_path / "q.pt"
    assert main(["export", str(tiny_weights), "-o", str(q)]) == 0
    assert q.stat().st_size < 0.75 * tiny_weights.stat().st_size
    ref, _ = load_generator(tiny_weights)
    net, _ = load_generator(q)
    for (k, a), b in zip(ref.state_dict().items(), net.state_dict().values()):
        if a.is_floating_point():
            step = a.abs().reshape(a.shape[0], -1).amax(1).max().item() / 127 if a.dim() == 4 else 1e-3
            assert (a - b).abs().max().item() <= step / 2 + 1e-3 * a.abs().max().item() + 1e-6, k
    grey = np.random.default_rng(0).random((2, 40, 56), dtype=np.float32)
    ab_ref = Colorizer(ref, "cpu", "fp32").predict(grey)
    ab_q = Colorizer(net, "cpu", "fp32").predict(grey)
    assert np.abs(ab_ref).mean() > 0.05 and np.abs(ab_q - ab_ref).max() < 0.01
    blob = torch.load(q, weights_only=True)
    key = next(iter(blob["int8_scales"]))
    blob["int8_scales"][key] = blob["int8_scales"][key][:1].repeat(3)  # wrong length
    torch.save(blob, tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match="do not match"):
        load_generator(tmp_path / "bad.pt")


def test_rarity_weights() -> None:
    """Rare (saturated) colours weigh more than common (neutral) ones, the mean weight under the
    photos' own colour distribution is 1, and strength 0 is plain L1."""
    from vidcolor.color import rgb_to_ab
    from vidcolor.data import ab_rarity_weights

    rng = np.random.default_rng(0)
    photos = np.full((40, 36, 36, 3), 128, np.uint8)  # mostly grey photos...
    photos += rng.integers(0, 12, photos.shape, dtype=np.uint8)
    photos[:4, :, :, 0] = 230  # ...and a few red ones
    w = ab_rarity_weights(photos, 0.5, bins=16, sample=40)
    n = w.shape[0]

    def weight_of(rgb: tuple[int, int, int]) -> float:
        a, b = ((rgb_to_ab(np.array([[rgb]], np.float32) / 255.0)[0, 0] + 1) * n / 2).astype(int).clip(0, n - 1)
        return float(w[a, b])

    assert weight_of((135, 133, 134)) < 1 < weight_of((230, 133, 134))
    pairs = np.concatenate([rgb_to_ab(p.astype(np.float32) / 255.0).reshape(-1, 2) for p in photos])
    idx = ((pairs + 1) * n / 2).astype(int).clip(0, n - 1)
    assert w[idx[:, 0], idx[:, 1]].mean() == pytest.approx(1.0, abs=1e-4)
    assert np.allclose(ab_rarity_weights(photos, 0.0, bins=16, sample=40), 1.0)


def test_rebalanced_training_changes_the_loss(tmp_path: Path, photos: Path) -> None:
    plain = tmp_path / "plain"
    train(_cfg(photos, plain, 2))
    weighted = tmp_path / "weighted"
    train(dataclasses.replace(_cfg(photos, weighted, 2), rebalance=0.5))
    # Same seed and data: the first step's plain L1 (logged) is equal, the updates are not.
    assert _losses(weighted)[0][0] == _losses(plain)[0][0]
    assert _losses(weighted)[1][0] != _losses(plain)[1][0]
    with pytest.raises(ConfigError, match="rebalance"):
        load_config(TrainConfig, None, {"rebalance": 1.0})


def test_export_blends_checkpoints(tmp_path: Path, tiny_weights: Path, tiny_guided_weights: Path) -> None:
    """`vidcolor export A B --shares` averages parameter by parameter: shares 1,0 give A back,
    0.25,0.75 give the weighted mean; mismatched architectures or shares are a one-line error."""
    from vidcolor.cli import main
    from vidcolor.model import GeneratorConfig, UnetGenerator, save_generator

    a, _ = load_generator(tiny_weights)
    torch.manual_seed(1)
    other = UnetGenerator(GeneratorConfig(ngf=8, num_downs=5))
    b_path = tmp_path / "b.pt"
    save_generator(other, b_path)
    b, _ = load_generator(b_path)
    out = tmp_path / "blend.pt"
    assert main(["export", str(tiny_weights), str(b_path), "--shares", "1,0", "--fp16", "-o", str(out)]) == 0
    same, meta = load_generator(out)
    for k, v in a.state_dict().items():
        assert torch.equal(same.state_dict()[k], v), k
    assert [m["share"] for m in meta["blend"]] == [1.0, 0.0]
    assert main(["export", str(tiny_weights), str(b_path), "--shares", "0.25,0.75", "--fp16", "-o", str(out)]) == 0
    mixed, _ = load_generator(out)
    sa, sb, sm = a.state_dict(), b.state_dict(), mixed.state_dict()
    moved = 0
    for k, v in sm.items():
        if v.is_floating_point():
            want = 0.25 * sa[k].float() + 0.75 * sb[k].float()
            assert torch.allclose(v.float(), want, atol=1e-3 * (1 + want.abs().max().item())), k
            moved += int(not torch.equal(sa[k], sb[k]))
    assert moved > 10  # the two nets really differ, so the check above means something
    for bad in (["--shares", "0.5,0.6"], ["--shares", "1"], ["--shares", "x,y"]):
        with pytest.raises(SystemExit) if bad[1] == "x,y" else contextlib.nullcontext():
            assert main(["export", str(tiny_weights), str(b_path), *bad, "-o", str(tmp_path / "x.pt")]) != 0
    assert main(["export", str(tiny_weights), str(tiny_guided_weights), "-o", str(tmp_path / "x.pt")]) != 0
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("zoom", [0.5, 0.7, 1.0, 1.3])
def test_random_resized_crop_scales_objects(zoom: float) -> None:
    """Objects come out `zoom` times as large (area zoom squared, whatever the aspect jitter);
    zoomed out past the photo, its edges are mirrored, so no blank border is invented."""
    img = np.full((144, 144, 3), 40, np.uint8)
    img[56:88, 56:88] = 255  # a 32 x 32 square, inside every 128 px view of the photo
    rng = np.random.default_rng(3)
    for _ in range(5):
        view = random_resized_crop(img, 128, (zoom, zoom), rng)
        assert view.shape == (128, 128, 3) and view.dtype == np.uint8
        if zoom >= 1.0:
            continue  # a zoomed-in view may cut the square; its size is checked zoomed out
        # The square's own copy: the component at the centre (mirrored edges may repeat it).
        _, labels = cv2.connectedComponents((view[..., 0] > 147).astype(np.uint8))
        area = int((labels == labels[64, 64]).sum()) if labels[64, 64] else 0
        assert abs(area - (32 * zoom) ** 2) <= 0.12 * (32 * zoom) ** 2 + 8, (zoom, area)
        assert view.min() >= 40 - 1  # no black padding


def test_batch_workers_reproduce(tmp_path: Path, photos: Path) -> None:
    """Batches made in worker processes: a seed gives the same run, and the workers' batches
    differ from each other (each worker seeded apart)."""
    from vidcolor.data import PhotoBatches, load_image_cache

    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        train(dataclasses.replace(_cfg(photos, out, 3), workers=2, guide=True))
        runs.append(_losses(out))
    assert runs[0] == runs[1]
    imgs = load_image_cache([photos], 36, tmp_path / "cache")
    batches = PhotoBatches(imgs, 32, 4, 0.0, seed=1, workers=2)
    it = iter(batches)
    first, second = next(it), next(it)
    batches.close()
    assert first[0].shape == (4, 1, 32, 32) and first[1].shape == (4, 2, 32, 32)
    assert not np.array_equal(first[0], second[0])


def test_time_budget_plans_the_schedule() -> None:
    """A run with `minutes` sets its step count from the measured speed and keeps each milestone
    at its share of the run; one at the end stays at the end."""
    from vidcolor.train import plan_steps

    cfg = load_config(TrainConfig, None, {"steps": 1000, "lr_decay_from": 500, "freeze_encoder_steps": 200,
                                          "nogan_steps": 1000, "minutes": 5.0})
    new = plan_steps(cfg, first=0, step=120, rate=10.0, left_s=100.0)
    assert new.steps == 120 + 970
    assert (new.lr_decay_from, new.freeze_encoder_steps, new.nogan_steps) == (545, 218, 1090)
    resumed = load_config(TrainConfig, None, {"steps": 3000, "lr_decay_from": 2500, "start_step": 2000})
    assert plan_steps(resumed, first=2000, step=2120, rate=1.0, left_s=0.0).steps == 2121  # never below done
    assert plan_steps(resumed, first=2000, step=2120, rate=10.0, left_s=100.0).lr_decay_from == 2545


def test_time_budget_stops_the_run(tmp_path: Path, photos: Path) -> None:
    out = tmp_path / "a"
    train(dataclasses.replace(_cfg(photos, out, 10**6), minutes=0.02))
    _, meta = load_generator(out / "generator_latest.pt")
    assert 0 < meta["steps"] < 10**6


def test_loss_power_below_one_leans_to_the_most_common_colour() -> None:
    """A grey surface that is neutral in 45 % of the photos and some warm colour (spread over
    0.2-0.6) in the rest: one colour fitted to it under L1 is the median, in the warm spread
    (0.23); under power 0.5 or 0.8 it is the neutral peak (0)."""
    from vidcolor.train import pixel_loss

    truth = torch.cat([torch.zeros(45), torch.linspace(0.2, 0.6, 55)])
    candidates = torch.linspace(-0.1, 0.7, 801)

    def best(power: float) -> float:
        losses = torch.stack([pixel_loss((c - truth).abs(), power).mean() for c in candidates])
        return float(candidates[losses.argmin()])

    assert abs(best(1.0) - float(truth.median())) < 2e-3
    assert abs(best(0.5)) < 1e-3 and abs(best(0.8)) < 1e-3

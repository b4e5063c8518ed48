"""pix2pix training: U-Net generator + conditional PatchGAN, loss = GAN + lambda * L1 on ab.

The generator first learns on L1 alone for `nogan_steps` (DeOldify's "NoGAN" warm start),
then the discriminator joins. Full training state is checkpointed atomically and resumed.
Imports neither av nor ray, so it runs on a bare GPU machine.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.profiler import record_function
from tqdm import tqdm

from .config import TrainConfig, config_dict
from .data import MatchRefs, PhotoBatches, ab_rarity_weights, load_image_cache
from .match import STRIDE, FeatureNet, match_grid
from .model import (
    GeneratorConfig,
    PatchDiscriminator,
    build_generator,
    init_weights,
    load_generator,
    save_atomic,
    save_generator,
)

log = logging.getLogger(__name__)


def _autocast(device: torch.device, precision: str) -> Any:
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def train(cfg: TrainConfig, max_minutes: float | None = None, step_hook: Callable[[], Any] | None = None) -> Path:
    """Run (or resume) training; returns the path of the latest fp16 generator export.
    `step_hook` is called after every step (a profiler's step counter)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)

    g = build_generator(GeneratorConfig(ngf=cfg.ngf, num_downs=cfg.num_downs, arch=cfg.arch, guide=cfg.guide))
    d = PatchDiscriminator(ndf=cfg.ndf).to(device)
    if cfg.arch == "effnet_unet":
        g.encoder.load_state_dict(encoder_weights(), strict=True)
        g.freeze_encoder = cfg.freeze_encoder_steps > 0  # set per step below
    else:
        init_weights(g)
    init_weights(d)
    g = g.to(device).to(memory_format=torch.channels_last)
    d = d.to(memory_format=torch.channels_last)
    aux = AbClassHead(g.head.in_channels).to(device) if cfg.lambda_ab_class > 0 else None
    fused = device.type == "cuda"  # one kernel for all parameters: a GPU step is launch-bound
    # The new head at AB_CLASS_LR_SCALE x the lr: at the fine-tunes' 1e-4 its cross-entropy took
    # 1,000 steps to fall from 6.1 (uniform over the bins) to 5.5.
    groups = param_groups(g, cfg) + ([{"params": list(aux.parameters()), "lr_scale": AB_CLASS_LR_SCALE}]
                                     if aux is not None else [])
    opt_g = torch.optim.Adam(groups, lr=cfg.lr, betas=(cfg.beta1, 0.999), fused=fused)
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999), fused=fused)

    step = 0
    state_path = out / "state.pt"
    ema_state = None
    if state_path.exists():
        st = torch.load(state_path, map_location=device, weights_only=False)
        g.load_state_dict(st["g"])
        d.load_state_dict(st["d"])
        opt_g.load_state_dict(st["opt_g"])
        opt_d.load_state_dict(st["opt_d"])
        step = int(st["step"])
        ema_state = st.get("ema")
        if aux is not None:
            aux.load_state_dict(st["aux"])
        log.info("resumed %s at step %d", state_path, step)
    elif cfg.init_generator:
        # A new run from an exported generator: G continues, D and the optimisers start fresh.
        src, _ = load_generator(cfg.init_generator)
        if src.cfg != g.cfg:
            raise ValueError(f"init_generator {cfg.init_generator} is {src.cfg}, the recipe asks for {g.cfg}")
        g.load_state_dict(src.state_dict())
        step = cfg.start_step
        log.info("generator initialised from %s, counting from step %d", cfg.init_generator, step)
    # The weight average starts from G wherever G starts (fresh, resumed without one, or imported).
    ema = copy.deepcopy(g).eval() if cfg.ema > 0 else None
    if ema is not None and ema_state is not None:
        ema.load_state_dict(ema_state)
    exported = g if ema is None else ema  # what snapshots and generator_latest.pt hold
    if aux is not None:
        g.head.register_forward_hook(aux.keep)  # after the average's copy: only G's step feeds it

    photos = load_image_cache(cfg.data, cfg.photo_side, Path(cfg.cache_dir))
    rarity = None
    if cfg.rebalance > 0:
        rarity = torch.from_numpy(ab_rarity_weights(photos, cfg.rebalance)).to(device)
        log.info("rarity-weighted L1 (strength %.2f): weights %.2f..%.2f", cfg.rebalance, rarity.min(), rarity.max())
    # Seed by step so a resumed run continues with fresh, reproducible batches.
    batches = PhotoBatches(photos, cfg.crop, cfg.batch_size, cfg.degrade, cfg.seed + step,
                           guide=(cfg.guide_none, cfg.guide_dense) if cfg.guide else None,
                           zoom=(cfg.zoom_min, cfg.zoom_max), matched=(cfg.guide_matched, cfg.matched_other),
                           workers=cfg.workers)
    features = FeatureNet(g) if cfg.guide_matched else None  # shares G's encoder: matches as G sees
    csv_path = out / "log.csv"
    new_csv = not csv_path.exists()
    csv_file = open(csv_path, "a", newline="")
    writer = csv.writer(csv_file)
    if new_csv:
        writer.writerow(["step", "elapsed_s", "images_per_s", "l1", "g_gan", "d_real", "d_fake"])

    g.train()
    d.train()
    t0 = time.time()
    last_t, last_step = t0, step
    acc = np.zeros(4)
    n_acc = 0
    latest = out / "generator_latest.pt"
    bar = tqdm(total=cfg.steps, initial=step, desc="train", unit="step", dynamic_ncols=True)
    it = iter(batches)
    first_step = step
    t_warm = t0
    if cfg.minutes:
        max_minutes = cfg.minutes if max_minutes is None else min(max_minutes, cfg.minutes)
    try:
        while step < cfg.steps:
            if cfg.minutes and step == first_step + PLAN_WARMUP:
                t_warm = time.time()  # the first steps (workers starting, kernels chosen) are slow
            if cfg.minutes and step == first_step + PLAN_AFTER:
                now = time.time()
                rate = (PLAN_AFTER - PLAN_WARMUP) / max(now - t_warm, 1e-9)
                cfg = plan_steps(cfg, first_step, step, rate, (max_minutes or cfg.minutes) * 60 - (now - t0))
                bar.total = cfg.steps
            if max_minutes is not None and time.time() - t0 > max_minutes * 60:
                log.info("time budget of %.1f min reached at step %d", max_minutes, step)
                break
            # Labelled for torch.profiler (benchmarks/gpu_train.py --profile); free otherwise.
            with record_function("data"):
                xb, yb, gb, refs = next(it)
            if cfg.arch == "effnet_unet":
                # Before the matched guides: their encoder pass needs its BatchNorm in eval mode
                # (from the first step; a padded batch must not touch the running statistics).
                set_encoder_frozen(g, step < cfg.freeze_encoder_steps)
            with record_function("to_device"):
                x = torch.from_numpy(xb).to(device).contiguous(memory_format=torch.channels_last)
                y = torch.from_numpy(yb).to(device).contiguous(memory_format=torch.channels_last)
                guide = None if gb is None else torch.from_numpy(gb).to(device)
            if refs is not None and features is not None and guide is not None:
                with record_function("matched_guides"):
                    guide = add_matched_guides(features, x, guide, refs)
            use_gan = step >= cfg.nogan_steps and cfg.lambda_gan > 0
            lr = lr_at(cfg, step)
            for group in (*opt_g.param_groups, *opt_d.param_groups):
                group["lr"] = lr * group.get("lr_scale", 1.0)
            if aux is not None:
                aux.attached = step >= cfg.start_step + AB_CLASS_WARMUP
            with record_function("step"):
                losses = train_step(g, d, opt_g, opt_d, x, y, cfg, use_gan, rarity, guide, aux)
            if ema is not None:
                with record_function("ema"):
                    update_ema(ema, g, cfg.ema)
            step += 1
            if step_hook is not None:
                step_hook()
            acc += losses
            n_acc += 1
            bar.update(1)
            if step % cfg.log_every == 0:
                now = time.time()
                ips = (step - last_step) * cfg.batch_size / max(now - last_t, 1e-9)
                m = acc / n_acc
                writer.writerow([step, f"{now - t0:.1f}", f"{ips:.1f}", *(f"{v:.5f}" for v in m)])
                csv_file.flush()
                bar.set_postfix(l1=f"{m[0]:.4f}", g_gan=f"{m[1]:.3f}", d=f"{(m[2] + m[3]) / 2:.3f}", ips=f"{ips:.0f}")
                acc[:] = 0
                n_acc = 0
                last_t, last_step = now, step
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                _checkpoint(g, d, ema, aux, opt_g, opt_d, step, cfg, state_path, latest)
                if aux is not None:
                    log.info("step %d: colour-class cross-entropy %.3f (mean since the last checkpoint)",
                             step, aux.mean_loss())
            if step % cfg.snapshot_every == 0:
                save_generator(exported, out / f"generator_{step:07d}.pt", _meta(cfg, step))
    finally:
        bar.close()
        batches.close()
        csv_file.close()
    _checkpoint(g, d, ema, aux, opt_g, opt_d, step, cfg, state_path, latest)
    return latest


PLAN_WARMUP, PLAN_AFTER = 20, 120  # a time-budgeted run times steps 20-120 to set its step count


def plan_steps(cfg: TrainConfig, first: int, step: int, rate: float, left_s: float) -> TrainConfig:
    """The recipe with `steps` set to what `rate` (steps/s) reaches in the `left_s` seconds left
    (3 % kept back for checkpoints), and its milestones (lr decay, encoder unfrozen, GAN joins)
    moved to the same share of this start's run (from step `first`) as before; one at or past
    the end stays there. Never fewer steps than already done."""
    steps = max(step + 1, step + int(rate * left_s * 0.97))

    def moved(milestone: int) -> int:
        if milestone >= cfg.steps:
            return steps
        if milestone <= first:
            return milestone
        return min(steps - 1, first + round((milestone - first) / (cfg.steps - first) * (steps - first)))

    new = dataclasses.replace(cfg, steps=steps, freeze_encoder_steps=moved(cfg.freeze_encoder_steps),
                              nogan_steps=moved(cfg.nogan_steps),
                              lr_decay_from=moved(cfg.lr_decay_from) if cfg.lr_decay_from else 0)
    log.info("%.1f steps/s: planned %d steps (encoder frozen to %d, GAN from %d, lr decay from %d) in the "
             "%.1f min left", rate, steps, new.freeze_encoder_steps, new.nogan_steps, new.lr_decay_from, left_s / 60)
    return new


def encoder_weights() -> dict[str, torch.Tensor]:
    """ImageNet EfficientNet-Lite0 weights, without the classifier the U-Net does not use."""
    from .efficientnet import imagenet_state_dict

    return {k: v for k, v in imagenet_state_dict().items() if not k.startswith(("_conv_head", "_bn1.", "_fc"))}


MATCH_BATCH_MULTIPLE = 16  # the encoder sees few distinct batch sizes (cuDNN chooses kernels per shape)


@torch.no_grad()
def add_matched_guides(features: nn.Module, x: torch.Tensor, guides: torch.Tensor, refs: MatchRefs) -> torch.Tensor:
    """The batch's guides with the feature-matched samples' completed, as the pipeline builds
    them: each sample's reference (every pixel its true colour, confidence 1) carried onto it as
    match.carry carries it (make_reference's grid of a fully covered guide is the cell mean),
    filling what its flow part (if any) leaves open. x and guides on the generator's device;
    the whole batch at once there, with no host round trip."""
    device = x.device
    m = len(refs.index)
    index = torch.as_tensor(refs.index, device=device)
    frames = torch.cat([x[index], torch.from_numpy(refs.x).to(device)])
    n = len(frames)
    frames = F.pad(frames, (0, 0, 0, 0, 0, 0, 0, -n % MATCH_BATCH_MULTIPLE))
    f = features(frames)[:n].float()
    gh, gw = f.shape[2:]
    cells = F.avg_pool2d(torch.from_numpy(refs.ab).to(device), STRIDE)  # (m, 2, gh, gw)
    ref_guide = torch.cat([cells, torch.ones_like(cells[:, :1])], 1).flatten(2).transpose(1, 2)
    grid = match_grid(f[:m].flatten(2), f[m:].flatten(2), ref_guide, torch.as_tensor(refs.strict, device=device))
    carried = F.interpolate(grid.transpose(1, 2).reshape(m, 3, gh, gw), size=x.shape[2:], mode="bilinear",
                            align_corners=False)  # cv2's INTER_LINEAR, as carry resizes
    out = guides.clone()
    out[index] += (1.0 - out[index, 2:3]) * carried
    return out


def param_groups(g: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """One Adam group for a from-scratch U-Net; for effnet_unet the ImageNet encoder gets its own
    group at `encoder_lr_scale` of the lr, so fine-tuning does not wash out what it knows."""
    if cfg.arch != "effnet_unet":
        return [{"params": list(g.parameters()), "lr_scale": 1.0}]
    enc = list(g.encoder.parameters())
    ids = {id(p) for p in enc}
    return [{"params": [p for p in g.parameters() if id(p) not in ids], "lr_scale": 1.0},
            {"params": enc, "lr_scale": cfg.encoder_lr_scale}]


def set_encoder_frozen(g: nn.Module, frozen: bool) -> None:
    """Decoder-only phase: the encoder gets no gradients. Its BatchNorm stays in eval mode in
    both phases (ImageNet statistics; batches of 16 small crops would estimate them badly)."""
    g.freeze_encoder = frozen
    for p in g.encoder.parameters():
        p.requires_grad_(not frozen)
    g.encoder.eval()


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Constant lr, then (from `lr_decay_from`) a straight line to 0 at `steps`, as pix2pix does."""
    if not cfg.lr_decay_from or step < cfg.lr_decay_from:
        return cfg.lr
    return cfg.lr * max(0.0, (cfg.steps - step) / (cfg.steps - cfg.lr_decay_from))


@torch.no_grad()
def update_ema(ema: nn.Module, g: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * g, for weights and BatchNorm statistics alike:
    the average of many nearby weights beats any one of them when single checkpoints swing."""
    for e, v in zip(ema.state_dict().values(), g.state_dict().values()):
        if e.is_floating_point():
            e.lerp_(v, 1.0 - decay)
        else:
            e.copy_(v)


LOSS_EPS = 0.01  # ab / 110: about one Lab unit
AB_CLASS_BINS = 22  # ab / 110 in [-1, 1] cut into bins of 10 Lab units (Zhang et al. 2016), per axis
AB_CLASS_WARMUP = 300  # steps from start_step in which the class head learns without moving G
AB_CLASS_LR_SCALE = 10.0  # the class head's lr relative to `lr`: it starts from nothing


def pixel_loss(err: torch.Tensor, power: float) -> torch.Tensor:
    """The L1 term's per-pixel loss of absolute errors: |e| at power 1; (|e| + eps)^p - eps^p
    below it, whose minimiser leans from the median toward the mode (the smooth core keeps the
    gradient finite at a perfect pixel)."""
    return err if power == 1.0 else (err + LOSS_EPS) ** power - LOSS_EPS ** power


def ab_bins(ab: torch.Tensor, n: int) -> torch.Tensor:
    """Each pixel's (a bin, b bin) of n x n equal bins over ab / AB_SCALE in [-1, 1]: (N, 2, H, W) long."""
    return ((ab + 1.0) * (n / 2)).long().clamp_(0, n - 1)


class AbClassHead(nn.Module):
    """The auxiliary colour-class head (`lambda_ab_class`): a 1x1 convolution from the generator's
    last decoder features (hooked on its output layer, `keep`) to AB_CLASS_BINS^2 ab bins."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, AB_CLASS_BINS * AB_CLASS_BINS, 1)
        self.features: torch.Tensor | None = None
        self._losses: list[float] = []  # since mean_loss last asked, for the log
        # A new head's gradients are noise: it first learns on fixed features (train() attaches
        # it AB_CLASS_WARMUP steps into the run). Measured: attached from the first step at
        # lambda_ab_class 10 it raised the training L1 by 8 % in 1,000 steps.
        self.attached = True

    def keep(self, _module: nn.Module, inputs: tuple[torch.Tensor, ...], _output: torch.Tensor) -> None:
        self.features = inputs[0]

    def loss(self, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the kept features' bins against the true ab (N, 2, H, W, ab / AB_SCALE),
        both area-averaged to a quarter of the input's resolution (the decoder ends at half)."""
        if self.features is None:
            raise RuntimeError("AbClassHead.loss before the generator ran")
        # At a quarter of the input's resolution: colour classes are coarse, and 484 logits a
        # pixel at the decoder's half resolution cost as much as the generator's own step.
        f, self.features = F.avg_pool2d(self.features, 2, ceil_mode=True), None
        if not self.attached:
            f = f.detach()
        t = F.interpolate(y, size=f.shape[-2:], mode="area")
        idx = ab_bins(t, AB_CLASS_BINS)
        loss = F.cross_entropy(self.conv(f).float(), idx[:, 0] * AB_CLASS_BINS + idx[:, 1])
        self._losses.append(loss.item())
        return loss

    def mean_loss(self) -> float:
        out, self._losses = float(np.mean(self._losses)) if self._losses else float("nan"), []
        return out


def train_step(g: nn.Module, d: nn.Module, opt_g: Any, opt_d: Any, x: torch.Tensor, y: torch.Tensor,
               cfg: TrainConfig, use_gan: bool, rarity: torch.Tensor | None = None,
               guide: torch.Tensor | None = None, aux: AbClassHead | None = None) -> list[float]:
    """One pix2pix step: D on (grey, real) vs (grey, fake), then G on 100 x L1 (+ GAN) (+ the
    colour-class loss through `aux`, which G's forward pass fed).
    `rarity` (bins x bins, see data.ab_rarity_weights) weights each pixel's L1 by how rare its
    true colour is. Returns [l1, g_gan, d_real, d_fake] (zeros for the GAN terms in the L1-only
    phase); l1 is the plain, unweighted L1, comparable between recipes."""
    bce = nn.BCEWithLogitsLoss()
    zero = torch.zeros((), device=x.device)
    with _autocast(x.device, cfg.precision):
        fake = g(x, guide)
    d_real = d_fake = g_gan = zero
    if use_gan:
        opt_d.zero_grad(set_to_none=True)
        with _autocast(x.device, cfg.precision):
            pred_fake = d(torch.cat([x, fake.detach()], 1))
            pred_real = d(torch.cat([x, y], 1))
            d_fake = bce(pred_fake.float(), torch.zeros_like(pred_fake, dtype=torch.float32))
            d_real = bce(pred_real.float(), torch.ones_like(pred_real, dtype=torch.float32))
        ((d_fake + d_real) * 0.5).backward()
        opt_d.step()
    opt_g.zero_grad(set_to_none=True)
    with _autocast(x.device, cfg.precision):
        err = (fake.float() - y).abs()
        l1 = err.mean()
        per_pixel = pixel_loss(err, cfg.loss_power)
        if rarity is not None:
            idx = ab_bins(y, rarity.shape[0])
            w = rarity[idx[:, 0], idx[:, 1]]  # one weight per pixel, from its true (a, b)
            loss = cfg.lambda_l1 * (per_pixel * w[:, None]).mean()
        else:
            loss = cfg.lambda_l1 * per_pixel.mean()
        if cfg.lambda_l2 > 0:
            loss = loss + cfg.lambda_l2 * (err * err).mean()
        if aux is not None:
            loss = loss + cfg.lambda_ab_class * aux.loss(y)
        if use_gan:
            pred = d(torch.cat([x, fake], 1))
            g_gan = bce(pred.float(), torch.ones_like(pred, dtype=torch.float32))
            loss = loss + cfg.lambda_gan * g_gan
    loss.backward()
    opt_g.step()
    return [l1.item(), g_gan.item(), d_real.item(), d_fake.item()]


def _meta(cfg: TrainConfig, step: int) -> dict[str, Any]:
    return {"steps": step, "train_config": config_dict(cfg), "images_seen": step * cfg.batch_size}


def _checkpoint(g: nn.Module, d: nn.Module, ema: nn.Module | None, aux: nn.Module | None, opt_g: Any,
                opt_d: Any, step: int, cfg: TrainConfig, state_path: Path, latest: Path) -> None:
    state = {"g": g.state_dict(), "d": d.state_dict(), "opt_g": opt_g.state_dict(),
             "opt_d": opt_d.state_dict(), "step": step, "config": config_dict(cfg)}
    if ema is not None:
        state["ema"] = ema.state_dict()
    if aux is not None:
        state["aux"] = aux.state_dict()
    save_atomic(state, state_path)
    save_generator(g if ema is None else ema, latest, _meta(cfg, step))

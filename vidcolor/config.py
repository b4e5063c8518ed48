"""Frozen dataclasses for jobs and training, loaded from TOML and validated up front."""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_WEIGHTS = PACKAGE_DIR / "weights" / "generator.pt"

ENCODERS = {
    # name: (codec, default container suffix, pixel format for 8-bit sources)
    "h264": ("libx264", ".mp4", "yuv420p"),
    "h265": ("libx265", ".mp4", "yuv420p"),
    "ffv1": ("ffv1", ".mkv", None),  # lossless: keeps the source's pixel format
    "prores": ("prores_ks", ".mov", "yuv422p10le"),
}


@dataclass(frozen=True)
class JobConfig:
    """Everything that decides the output of a colorize job (see configs/default.toml)."""

    weights: str = ""  # empty: the shipped model in vidcolor/weights/generator.pt
    guide: str = ""  # colour guide: a keyframe folder (vidcolor keyframes) or a hints .toml; empty: none
    reference: str = ""  # colour photo(s) of similar scenes (a file or a folder): matched to every frame
    working_size: int = 144  # short side of the model input, px (the scale the model was trained at)
    second_scale: float = 0.0  # 0: off; 2: unguided frames also coloured twice enlarged, the two averaged
    batch_size: int = 8
    saturation: float = 1.27  # gain on the model's own chroma (1 = as predicted; 1.27: ~70 % colourfulness)
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    device: str = "auto"  # auto | cpu | cuda
    backend: str = "auto"  # auto (OpenVINO on CPU, torch on CUDA) | torch | openvino
    smoothing: bool = True
    smoothing_strength: float = 0.8  # weight of the motion-compensated past, 0..<1
    scene_cut_threshold: float = 0.25  # mean abs luma change (0..1) that marks a cut
    encoder: str = "h264"
    crf: int = 18
    preset: str = "medium"
    chunk_seconds: float = 30.0
    warmup_frames: int = 8
    video_stream: int = 0  # which video stream to colorize (index among video streams)
    allow_colour_input: bool = False
    deinterlace: bool = False  # interlaced frames through yadif; the output is progressive

    def validate(self) -> JobConfig:
        if self.encoder not in ENCODERS:
            raise ConfigError(f"unknown encoder {self.encoder!r}; choose one of {', '.join(ENCODERS)}")
        if not 0 <= self.crf <= 51:
            raise ConfigError(f"crf must be within 0..51, got {self.crf}")
        if not 32 <= self.working_size <= 4096:
            raise ConfigError(f"working_size must be within 32..4096, got {self.working_size}")
        if self.second_scale != 0 and not 1.0 < self.second_scale <= 4.0:
            raise ConfigError(f"second_scale must be 0 (off) or within (1, 4], got {self.second_scale}")
        if not 1 <= self.batch_size <= 1024:
            raise ConfigError(f"batch_size must be within 1..1024, got {self.batch_size}")
        if not 0.0 <= self.smoothing_strength < 1.0:
            raise ConfigError(f"smoothing_strength must be within [0, 1), got {self.smoothing_strength}")
        if not 0.0 <= self.saturation <= 4.0:
            raise ConfigError(f"saturation must be within 0..4, got {self.saturation}")
        if not 0.0 < self.scene_cut_threshold <= 1.0:
            raise ConfigError(f"scene_cut_threshold must be within (0, 1], got {self.scene_cut_threshold}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ConfigError(f"precision must be auto, fp32, bf16 or fp16, got {self.precision!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.backend not in ("auto", "torch", "openvino"):
            raise ConfigError(f"backend must be auto, torch or openvino, got {self.backend!r}")
        if self.chunk_seconds <= 0:
            raise ConfigError(f"chunk_seconds must be positive, got {self.chunk_seconds}")
        if not 0 <= self.warmup_frames <= 1000:
            raise ConfigError(f"warmup_frames must be within 0..1000, got {self.warmup_frames}")
        if self.video_stream < 0:
            raise ConfigError(f"video_stream must be >= 0, got {self.video_stream}")
        return self

    @property
    def weights_path(self) -> Path:
        return Path(self.weights) if self.weights else DEFAULT_WEIGHTS


@dataclass(frozen=True)
class TrainConfig:
    """A pix2pix training recipe (see configs/train_*.toml)."""

    data: list[str] = field(default_factory=lambda: ["../shared/data/train"])
    out_dir: str = "runs/default"
    cache_dir: str = ".cache"
    photo_side: int = 144
    crop: int = 128
    batch_size: int = 16
    steps: int = 20000
    nogan_steps: int = 4000  # generator pretrained on L1 alone before the GAN joins
    lr: float = 2e-4
    beta1: float = 0.5
    lambda_l1: float = 100.0
    lambda_gan: float = 1.0
    ngf: int = 32
    num_downs: int = 7
    ndf: int = 64
    degrade: float = 1.0  # probability scale of archival-film degradations on the input
    seed: int = 0
    precision: str = "bf16"  # fp32 | bf16 (CPU autocast) ; CUDA uses bf16 autocast too
    threads: int = 0  # torch threads, 0 = torch's default
    log_every: int = 50
    checkpoint_every: int = 500
    snapshot_every: int = 2000  # fp16 generator exports kept for `vidcolor eval`
    init_generator: str = ""  # start G from this exported generator (e.g. the shipped model)
    start_step: int = 0  # step count to credit to init_generator (decides NoGAN vs GAN phase)
    lr_decay_from: int = 0  # from this step lr falls linearly to 0 at `steps` (pix2pix's schedule); 0 = constant
    ema: float = 0.0  # decay of a moving average of G's weights; > 0 exports the average instead of G
    rebalance: float = 0.0  # weight L1 by colour rarity (Zhang 2016 uses 0.5); 0 = plain L1
    lambda_l2: float = 0.0  # squared-error term next to L1: PSNR rewards the mean, L1 the median
    # Exponent p of the per-pixel error in the L1 term, (|e| + eps)^p - eps^p: 1 is L1 (the median
    # colour); below 1 leans toward the most common colour (the mode), away from a warm tail.
    loss_power: float = 1.0
    # Weight of an auxiliary colour-class loss (Zhang et al. 2016): a 1x1 head on the decoder's
    # last features names each pixel's ab bin (10 Lab units wide), cross-entropy beside the L1.
    # The head shapes the shared features only: it is never exported, the network still predicts
    # ab by regression. 0 = off. effnet_unet only.
    lambda_ab_class: float = 0.0
    arch: str = "unet"  # unet (from scratch) | effnet_unet (ImageNet-trained EfficientNet-Lite0 encoder)
    freeze_encoder_steps: int = 0  # effnet_unet: train the decoder alone (encoder frozen) this long
    encoder_lr_scale: float = 0.1  # effnet_unet: encoder lr relative to `lr` once it trains
    guide: bool = False  # train with colour guides (Zhang et al. 2017): random true-colour hints
    guide_none: float = 0.45  # share of samples given no guide (the unguided use must stay good)
    guide_dense: float = 0.2  # share given a dense guide (a propagated keyframe), the rest points
    # Share of guided-model samples whose guide is carried by feature matching (match.py) from
    # another view of the photo (a keyframe after motion) or, `matched_other` of them, from another
    # photo (a reference that shows something else): the net learns when to trust a match.
    # Drawn first; the rest split as guide_none / guide_dense / points.
    guide_matched: float = 0.0
    matched_other: float = 0.3
    # Random resized crops: each sample's zoom drawn log-uniform from [zoom_min, zoom_max] (1 = the
    # photo's own scale; 1.5 = objects half as large again), aspect jittered up to 4:3. 1, 1 = plain crops.
    zoom_min: float = 1.0
    zoom_max: float = 1.0
    # Processes that make batches (0: one background thread, enough on a CPU, where torch takes
    # the cores; a GPU eats batches faster than one core makes them: measured 430-670 images/s
    # of the matched recipe per process on this project's CPU).
    workers: int = 0
    # A time budget in minutes (0 = none): training stops then, and `steps` (with the milestones
    # lr_decay_from, freeze_encoder_steps and nogan_steps at the same shares of the run) is
    # re-planned from the speed measured over steps 20-120 (train.plan_steps), so the lr reaches 0
    # on time on hardware whose speed is not known ahead.
    minutes: float = 0.0

    def validate(self) -> TrainConfig:
        if self.crop % (1 << self.num_downs):
            raise ConfigError(f"crop {self.crop} must be a multiple of 2**num_downs = {1 << self.num_downs}")
        if self.crop > self.photo_side:
            raise ConfigError("crop must not exceed photo_side")
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"training precision must be fp32 or bf16, got {self.precision!r}")
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError("steps and batch_size must be positive")
        if not 0.0 <= self.ema < 1.0:
            raise ConfigError(f"ema must be in [0, 1), got {self.ema}")
        if not 0.1 <= self.loss_power <= 2.0:
            raise ConfigError(f"loss_power must be within 0.1..2, got {self.loss_power}")
        if not 0.0 <= self.rebalance < 1.0:
            raise ConfigError(f"rebalance must be in [0, 1), got {self.rebalance}")
        if self.lambda_ab_class < 0 or (self.lambda_ab_class > 0 and self.arch != "effnet_unet"):
            raise ConfigError(f"lambda_ab_class must be >= 0, and only effnet_unet has the head it trains; "
                              f"got {self.lambda_ab_class} with arch {self.arch!r}")
        if self.arch not in ("unet", "effnet_unet"):
            raise ConfigError(f"arch must be unet or effnet_unet, got {self.arch!r}")
        if self.arch == "effnet_unet" and self.num_downs != 5:
            raise ConfigError("effnet_unet halves 5 times: set num_downs = 5")
        if self.guide and self.guide_none + self.guide_dense > 1.0:
            raise ConfigError("guide_none + guide_dense must not exceed 1")
        if not (0.0 <= self.guide_matched <= 1.0 and 0.0 <= self.matched_other <= 1.0):
            raise ConfigError("guide_matched and matched_other are shares in [0, 1]")
        if self.guide_matched and not (self.guide and self.arch == "effnet_unet"):
            raise ConfigError("guide_matched needs guide = true and arch = effnet_unet (its encoder matches)")
        if not 0.5 <= self.zoom_min <= self.zoom_max <= 4.0:
            raise ConfigError(f"need 0.5 <= zoom_min <= zoom_max <= 4, got {self.zoom_min}, {self.zoom_max}")
        if self.workers < 0 or self.minutes < 0:
            raise ConfigError("workers and minutes must not be negative")
        if self.lr_decay_from < 0 or (self.lr_decay_from and self.lr_decay_from >= self.steps):
            raise ConfigError("lr_decay_from must be 0 (off) or a step before `steps`")
        return self


T = TypeVar("T", JobConfig, TrainConfig)


def _coerce(cls: type[T], values: dict[str, Any], source: str) -> dict[str, Any]:
    known = {f.name: f for f in fields(cls)}
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"unknown config key {key!r} in {source}; known keys: {', '.join(known)}")
        default = getattr(cls(), key)
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            value = float(value) if ok else value
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, list):
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        else:
            ok = isinstance(value, str)
        if not ok:
            raise ConfigError(f"config key {key!r} in {source} must be {type(default).__name__}, got {value!r}")
        out[key] = value
    return out


def load_config(cls: type[T], path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> T:
    """Defaults <- TOML file <- explicit overrides (None values ignored), then validated."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as err:
            raise ConfigError(f"cannot read config {path}: {err.strerror}") from err
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"config {path} is not valid TOML: {err}") from err
        values.update(_coerce(cls, data, str(path)))
    if overrides:
        values.update(_coerce(cls, {k: v for k, v in overrides.items() if v is not None}, "options"))
    return dataclasses.replace(cls(), **values).validate()


def config_dict(cfg: JobConfig | TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)

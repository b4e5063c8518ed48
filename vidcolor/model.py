"""pix2pix networks: the U-Net generator, the PatchGAN discriminator, and checkpoint I/O.

A checkpoint carries its own architecture config, so a file is enough to rebuild the model.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from . import openvino_net
from .color import quantize_luma, rgb_to_luma, working_size
from .data import list_images
from .efficientnet import INPUT_MEAN, INPUT_STD, SKIP_WIDTHS, EfficientNetLite0
from .errors import ConfigError, WeightsError
from .hints import spread_hints
from .match import FeatureNet

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "vidcolor-generator/1"


ARCHS = ("unet", "effnet_unet")
GUIDE_CHANNELS = 3  # colour guide: a * confidence, b * confidence (ab / AB_SCALE), confidence


@dataclass(frozen=True)
class GeneratorConfig:
    in_channels: int = 1  # grey luma
    out_channels: int = 2  # Lab ab / AB_SCALE
    ngf: int = 32  # unet: first layer width; effnet_unet: narrowest decoder width
    num_downs: int = 7  # input sides must be multiples of 2**num_downs (effnet_unet: 5)
    use_dropout: bool = False
    # "unet": the pix2pix U-Net trained from scratch; "effnet_unet": EfficientNet-Lite0 encoder
    # (ImageNet-trained) with a light decoder predicting ab at half resolution.
    arch: str = "unet"
    guide: bool = False  # takes a colour guide (GUIDE_CHANNELS) besides the grey frame

    @property
    def multiple(self) -> int:
        return 1 << self.num_downs


def _down(cin: int, cout: int, norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, 2, 1, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(cout))
    return nn.Sequential(*layers)


def _up(cin: int, cout: int, dropout: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.ReLU(True),
        nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if dropout:
        layers.append(nn.Dropout(0.5))
    return nn.Sequential(*layers)


class UnetGenerator(nn.Module):
    """The pix2pix U-Net: num_downs stride-2 convs down, mirrored transposed convs up,
    skip connections between mirrored layers. Same layers as the recursive original,
    written as two lists so the data flow is readable."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ngf = cfg.ngf
        widths = [min(ngf * 2**i, ngf * 8) for i in range(cfg.num_downs)]
        self.downs = nn.ModuleList()
        cin = cfg.in_channels
        for i, w in enumerate(widths):
            # Outermost has no norm; the innermost has none either (1x1 at the bottleneck).
            norm = 0 < i < cfg.num_downs - 1
            block = _down(cin, w, norm)
            self.downs.append(block if i == 0 else nn.Sequential(nn.LeakyReLU(0.2, True), block))
            cin = w
        self.ups = nn.ModuleList()
        for i in reversed(range(1, cfg.num_downs)):
            inner = widths[i] if i == cfg.num_downs - 1 else widths[i] * 2
            dropout = cfg.use_dropout and i >= cfg.num_downs - 3 and widths[i - 1] == ngf * 8
            self.ups.append(_up(inner, widths[i - 1], dropout))
        self.outer = nn.Sequential(
            nn.ReLU(True), nn.ConvTranspose2d(widths[0] * 2, cfg.out_channels, 4, 2, 1), nn.Tanh()
        )

    def forward(self, x: torch.Tensor, guide: torch.Tensor | None = None) -> torch.Tensor:
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
        x = skips.pop()
        for up in self.ups:
            x = torch.cat([up(x), skips.pop()], 1)
        return self.outer(x)


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True))


def guide_pyramid(guide: torch.Tensor, strides: tuple[int, ...]) -> list[torch.Tensor]:
    """The colour guide at each decoder stride: mean hinted ab (confidence-weighted), mean and
    max confidence. A single hinted pixel survives pooling in the max, and its colour in the
    weighted mean, so one point still reaches every level."""
    out = []
    for s in strides:
        if s == 1:
            pooled, peak = guide, guide[:, 2:3]
        else:
            pooled = F.avg_pool2d(guide, s)
            peak = F.max_pool2d(guide[:, 2:3], s)
        conf = pooled[:, 2:3]
        out.append(torch.cat([pooled[:, :2] / (conf + 1e-3), conf, peak], 1))
    return out


GUIDE_LEVEL_CHANNELS = 4


class EffUnetGenerator(nn.Module):
    """U-Net on an EfficientNet-Lite0 encoder: the encoder's stride 2..32 features are the skips
    of a light decoder (bilinear up, concat, 3x3 conv + BN + ReLU). ab is predicted at half
    resolution and upsampled: colour is low-frequency, and the full-resolution level would
    cost most of the decoder's time. A guided model gets the colour guide at every level."""

    STRIDES = (32, 16, 8, 4, 2)

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = EfficientNetLite0()
        self.freeze_encoder = False  # training sets it for the decoder-only phase
        w = cfg.ngf
        widths = (8 * w, 4 * w, 2 * w, w + w // 2, w)  # at strides 32, 16, 8, 4, 2
        g = GUIDE_LEVEL_CHANNELS if cfg.guide else 0
        skips = tuple(reversed(SKIP_WIDTHS))
        self.levels = nn.ModuleList()
        cin = 0
        for i, (skip, width) in enumerate(zip(skips, widths)):
            layers = [_conv_bn_relu(cin + skip + g, width)]
            if i < 2:  # the coarse levels are cheap: one more conv for a wider view
                layers.append(_conv_bn_relu(width, width))
            self.levels.append(nn.Sequential(*layers))
            cin = width
        self.head = nn.Conv2d(cin, cfg.out_channels, 3, 1, 1)
        nn.init.zeros_(self.head.weight)  # starts at ab = 0: grey, the safe guess
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor, guide: torch.Tensor | None = None) -> torch.Tensor:
        """x: (N, 1, H, W) grey in [-1, 1], H and W multiples of 32; guide: (N, 3, H, W) or None."""
        rgb = ((x + 1.0) * 0.5 - INPUT_MEAN) / INPUT_STD
        rgb = rgb.expand(-1, 3, -1, -1)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            feats = self.encoder.features(rgb)
        guides: list[torch.Tensor | None] = [None] * len(self.STRIDES)
        if self.cfg.guide:
            if guide is None:
                guide = x.new_zeros((x.shape[0], GUIDE_CHANNELS, *x.shape[2:]))
            guides = guide_pyramid(guide.to(x.dtype), self.STRIDES)
        y = None
        for level, skip, gd in zip(self.levels, reversed(feats), guides):
            parts = [skip] if y is None else [F.interpolate(y, size=skip.shape[-2:], mode="bilinear"), skip]
            if gd is not None:
                parts.append(gd)
            y = level(torch.cat(parts, 1))
        y = torch.tanh(self.head(y))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear")


def build_generator(cfg: GeneratorConfig) -> nn.Module:
    if cfg.arch == "effnet_unet":
        return EffUnetGenerator(cfg)
    return UnetGenerator(cfg)


class PatchDiscriminator(nn.Module):
    """70x70 PatchGAN (n_layers=3), conditioned on the grey input: sees cat(grey, ab)."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=False),
                nn.BatchNorm2d(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def init_weights(net: nn.Module, gain: float = 0.02) -> None:
    """pix2pix init: N(0, 0.02) convs, N(1, 0.02) norm scales."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


def save_generator(net: nn.Module, path: str | os.PathLike, meta: dict[str, Any] | None = None,
                   half: bool = True, int8: bool = False) -> None:
    """Write a self-describing generator checkpoint atomically (fp16 by default: half the size).

    `int8`: convolution kernels as int8 with one fp32 scale per leading channel, the rest fp16:
    half the size again (for the shipped file, which every clone carries); measured -0.02 dB."""
    state: dict[str, torch.Tensor] = {}
    scales: dict[str, torch.Tensor] = {}
    for k, v in net.state_dict().items():
        if int8 and v.is_floating_point() and v.dim() == 4:
            flat = v.float().reshape(v.shape[0], -1)
            scale = (flat.abs().amax(1) / 127).clamp_min(1e-12)
            state[k] = (flat / scale[:, None]).round().clamp(-127, 127).to(torch.int8).reshape(v.shape)
            scales[k] = scale
        else:
            state[k] = v.half() if half and v.is_floating_point() else v
    blob = {"format": CHECKPOINT_FORMAT, "config": asdict(net.cfg), "state_dict": state, "meta": meta or {}}
    if scales:
        blob["int8_scales"] = scales
    save_atomic(blob, path)


def _dequantize(state: dict[str, torch.Tensor], scales: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        if k in scales:
            v = v.float() * scales[k].float().reshape(-1, *([1] * (v.dim() - 1)))
        out[k] = v.float() if v.is_floating_point() else v
    return out


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """torch.save to `name.part`, fsync, rename: a crash leaves the old file or the new one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_generator(path: str | os.PathLike, data: bytes | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a generator from a checkpoint file (or its bytes); any problem is a WeightsError."""
    path = Path(path)
    if data is None:
        if not path.is_file():
            raise WeightsError(f"model weights not found: {path} (train one with `vidcolor train`, or pass --weights)")
        try:
            data = path.read_bytes()
        except OSError as err:
            raise WeightsError(f"cannot read model weights {path}: {err.strerror or err}") from err
    try:
        with warnings.catch_warnings():  # a damaged pickle header makes torch warn: the error says it all
            warnings.simplefilter("ignore")
            blob = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for damaged files
        raise WeightsError(f"model weights unreadable (truncated or not a checkpoint): {path}") from err
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(f"not a vidcolor generator checkpoint: {path}")
    try:
        cfg = GeneratorConfig(**blob["config"])
        if not (1 <= cfg.num_downs <= 10 and 1 <= cfg.ngf <= 512 and cfg.arch in ARCHS):
            raise ValueError(f"implausible architecture {cfg}")
        net = build_generator(cfg)
        net.load_state_dict(_dequantize(blob["state_dict"], blob.get("int8_scales") or {}))
    except Exception as err:
        # torch's mismatch report spans many lines; the CLI prints one.
        detail = " ".join(str(err).split())[:200]
        raise WeightsError(f"model weights do not match their architecture: {path}: {detail}") from err
    meta = dict(blob.get("meta") or {}) if isinstance(blob.get("meta"), dict) else {}
    meta["sha256"] = hashlib.sha256(data).hexdigest()
    net.eval()
    return net, meta


def blend_generators(srcs: list[str | os.PathLike],
                     shares: list[float] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Several checkpoints of one architecture averaged parameter by parameter (a "model soup";
    equal shares unless given). Why: runs fine-tuned from one model stay in one basin, and their
    average can beat each (session 10: the L1 model and its GAN phase, half and half, moved the
    dev clips' PSNR-against-colour curve up). The metadata is the first file's, plus the recipe."""
    if not srcs:
        raise ValueError("no checkpoint to export")
    shares = [1.0 / len(srcs)] * len(srcs) if shares is None else list(shares)
    if len(shares) != len(srcs) or any(w < 0 for w in shares) or not math.isclose(sum(shares), 1.0, abs_tol=1e-6):
        raise ConfigError(f"blend shares must be one non-negative number per checkpoint, summing to 1: {shares}")
    nets = [load_generator(src) for src in srcs]
    net, meta = nets[0]
    for other, _ in nets[1:]:
        if other.cfg != net.cfg:
            raise WeightsError(f"cannot blend checkpoints of different architectures: {net.cfg} and {other.cfg}")
    meta = {k: v for k, v in meta.items() if k != "sha256"}
    if len(nets) > 1:
        states = [n.state_dict() for n, _ in nets]
        mixed = {}
        for k, v in states[0].items():  # integer buffers (BatchNorm's step count): the first file's
            mixed[k] = sum(w * s[k].float() for w, s in zip(shares, states)).to(v.dtype) if v.is_floating_point() else v
        net.load_state_dict(mixed)
        meta["blend"] = [{"checkpoint": Path(src).name, "sha256": m["sha256"], "share": w}
                         for src, (_, m), w in zip(srcs, nets, shares)]
    return net, meta


CALIBRATION_PHOTOS = 256


def bf16_chroma_gain(net: nn.Module, photos: list[Path], short_side: int = 144) -> float:
    """OpenVINO f32's mean chroma over bf16's on these photos (grey as a video stores it, at the
    working size, unguided). Why: bf16 rounding shifts a network's colour as a whole, by a
    per-model amount (measured on the dev photos: 15,000-step model +0.5 %, session 10's blend
    −3.3 %, other candidates −2.4 to +0.1 %), which moved bf16 along the PSNR-against-colour curve
    away from f32 (the blend: photos −2.2 points of colourfulness, clips +0.08 dB). The gain,
    stored in the weights and applied to bf16 output, puts both precisions at one point."""
    if not openvino_net.available() or not openvino_net.cpu_has_bf16():
        raise WeightsError("calibrating bf16 needs OpenVINO on a CPU with native bf16")
    # Built here, not from a file: no gain is applied to the output being measured.
    runs = {p: Colorizer(net, "cpu", p, "openvino") for p in ("fp32", "bf16")}
    chroma = {p: 0.0 for p in runs}
    for path in photos:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise WeightsError(f"calibration photo unreadable: {path}")
        y = rgb_to_luma(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0)
        size = working_size(y.shape[1], y.shape[0], short_side)
        grey = quantize_luma(cv2.resize(y, size, interpolation=cv2.INTER_AREA))
        for p, c in runs.items():
            chroma[p] += float(np.hypot(*np.moveaxis(c.predict(grey[None], pad_to=1)[0], -1, 0)).mean())
    if chroma["bf16"] <= 0:
        raise WeightsError("calibration photos gave no colour at all")
    return chroma["fp32"] / chroma["bf16"]


def calibration_photos(folder: Path, count: int = CALIBRATION_PHOTOS, seed: int = 0) -> list[Path]:
    """A fixed random sample of the photos under `folder` (any depth): the same files every time."""
    found = list_images([folder])
    if not found:
        raise WeightsError(f"no photos under {folder} to calibrate with")
    pick = np.random.default_rng(seed).permutation(len(found))[:count]
    return [found[i] for i in sorted(pick)]


def export_generator(srcs: list[str | os.PathLike], dest: str | os.PathLike, int8: bool = True,
                     shares: list[float] | None = None, calibrate: Path | None = None) -> None:
    """Training snapshots -> the file to ship (int8 kernels by default): one snapshot as it is, or
    several blended (`blend_generators`). Keeps the metadata except the content hash, which
    belongs to the source file. `calibrate`: a folder of colour photos on which to measure the
    file's bf16 chroma gain (`bf16_chroma_gain`, stored in the metadata)."""
    net, meta = blend_generators(srcs, shares)
    meta.pop("bf16_chroma_gain", None)  # it belonged to the source's numbers
    if calibrate is not None:
        # Measured on the weights as they will be stored (fp16 or int8), not on the source's.
        with tempfile.TemporaryDirectory() as tmp:
            save_generator(net, Path(tmp) / "g.pt", meta, int8=int8)
            stored, _ = load_generator(Path(tmp) / "g.pt")
        gain = bf16_chroma_gain(stored, calibration_photos(calibrate))
        meta["bf16_chroma_gain"] = round(gain, 5)
        log.info("bf16 chroma gain %.4f (%d photos under %s)", gain, CALIBRATION_PHOTOS, calibrate)
    save_generator(net, dest, meta, int8=int8)


def pick_device(device: str) -> torch.device:
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise WeightsError("device 'cuda' asked for, but torch sees no CUDA GPU")
        return torch.device("cuda")
    return torch.device("cpu")


def network_threads() -> int:
    """OpenVINO's threads for one network: half of the process's (torch's count: the cores, or a
    Ray actor's share), at least one. The network runs in its own pipeline stage beside decode,
    the colour math and the encoder, which keep the other cores busy; on this 2-core machine one
    thread spent 6.9 ms of CPU per frame against 8.0 for two (bf16, batch 8), identical output,
    and the 480p example ran 5-8 % faster end to end."""
    return max(1, torch.get_num_threads() // 2)


def _enlarge(grey: np.ndarray, scale: float) -> np.ndarray:
    """Grey frames (N, H, W) resized `scale` times (bilinear); unchanged at 1."""
    if scale == 1:
        return grey
    size = (max(1, round(grey.shape[2] * scale)), max(1, round(grey.shape[1] * scale)))
    return np.stack([cv2.resize(g, size, interpolation=cv2.INTER_LINEAR) for g in grey])


class Colorizer:
    """Runs a generator on batches of small grey frames; the only place inference happens.

    Eval mode (running BatchNorm statistics, no dropout), so a frame's colour does not depend
    on what else is in its batch.
    """

    def __init__(self, net: nn.Module, device: str = "auto", precision: str = "auto",
                 backend: str = "auto") -> None:
        self.device = pick_device(device)
        if backend == "auto":
            # OpenVINO runs the network 2.5x (f32) to 7x (bf16) faster than torch on CPU (measured).
            backend = "openvino" if self.device.type == "cpu" and openvino_net.available() else "torch"
        if backend == "openvino":
            if self.device.type != "cpu":
                raise WeightsError("backend 'openvino' runs on the CPU; use backend 'torch' with CUDA")
            if not openvino_net.available():
                raise WeightsError("backend 'openvino' asked for, but openvino is not installed "
                                   "(pip install openvino, or use --backend torch)")
        self.backend = backend
        if precision == "auto":
            if backend == "openvino":
                # bf16 where the CPU has it natively (with the weights' bf16 gain: clips −0.007 dB,
                # photos −0.018 against f32 on the dev set, measured), else f32.
                precision = "bf16" if openvino_net.cpu_has_bf16() else "fp32"
            else:
                # On CPU bf16 speeds the plain U-Net up, but slows EfficientNet's depthwise
                # convolutions down (measured): fp32 there.
                cpu = "fp32" if net.cfg.arch == "effnet_unet" else "bf16"
                precision = "fp16" if self.device.type == "cuda" else cpu
        if precision == "fp16" and self.device.type == "cpu":
            precision = "bf16"  # CPU fp16 convolutions are slow; bf16 is the CPU's half type
        self.precision = precision
        self.net = net.eval().to(self.device)
        if self.device.type == "cuda" and precision == "fp16":
            self.net = self.net.half()
        self.net = self.net.to(memory_format=torch.channels_last)
        self.ov_net = (openvino_net.OpenVinoNet(self.net, precision, GUIDE_CHANNELS if net.cfg.guide else 0,
                                                network_threads())
                       if backend == "openvino" else None)
        self.feature_net: Any = None  # built on first use (guided jobs only)
        self.can_match = hasattr(net, "encoder")  # features for matching: the EfficientNet encoder's
        self.multiple = net.cfg.multiple
        self.takes_guide = net.cfg.guide
        self.meta: dict[str, Any] = {}
        self.bf16_gain = 1.0  # set from the weights' metadata (from_file)

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: str = "auto", precision: str = "auto",
                  data: bytes | None = None, backend: str = "auto") -> Colorizer:
        net, meta = load_generator(path, data)
        c = cls(net, device, precision, backend)
        c.meta = meta
        gain = meta.get("bf16_chroma_gain", 1.0)
        if not (isinstance(gain, (int, float)) and 0.5 <= gain <= 2.0):
            raise WeightsError(f"implausible bf16_chroma_gain {gain!r} in {path}")
        c.bf16_gain = float(gain)
        return c

    @classmethod
    def for_job(cls, cfg: Any) -> Colorizer:
        """The colorizer a job config (config.JobConfig) asks for."""
        return cls.from_file(cfg.weights_path, cfg.device, cfg.precision, backend=cfg.backend)

    def _input(self, grey: np.ndarray, pad_to: int) -> tuple[np.ndarray, tuple[int, int]]:
        """grey (N, H, W) [0, 1] -> network input (pad_to or N, 1, H', W') in [-1, 1], reflect-padded
        to the network's multiple (centred), and the padding (rows, columns). numpy, not torch:
        torch's threads would spin beside the encoder's for a few microseconds of work."""
        n_real = grey.shape[0]
        if pad_to > n_real:
            grey = np.concatenate([grey, np.zeros((pad_to - n_real, *grey.shape[1:]), grey.dtype)])
        _n, h, w = grey.shape
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        x = (grey.astype(np.float32, copy=False) * 2.0 - 1.0)[:, None]
        if ph or pw:
            # Reflect-pad to the U-Net's multiple; tiny frames fall back to replicate.
            mode = "reflect" if ph < h and pw < w else "edge"
            x = np.pad(x, ((0, 0), (0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)), mode=mode)
        return np.ascontiguousarray(x), (ph, pw)

    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(x)
        if self.device.type == "cuda":
            # Pinned host memory lets the copy run asynchronously to the host thread.
            t = t.pin_memory().to(self.device, non_blocking=True)
        return t.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def features(self, grey: np.ndarray, pad_to: int = 0, scale: int = 1) -> tuple[np.ndarray, tuple[int, int]]:
        """Matching features (match.FeatureNet) of grey frames (N, H, W) [0, 1], enlarged `scale`
        times: (N, C, H'/8, W'/8) on the grid of the enlarged, padded frame, and that padding
        (rows, columns)."""
        if self.feature_net is None:
            net = FeatureNet(self.net).eval()
            self.feature_net = (openvino_net.OpenVinoNet(net, self.precision, 0, network_threads())
                                if self.backend == "openvino" else net)
        x, pad = self._input(_enlarge(grey, scale), pad_to)
        return self._run(self.feature_net, x)[: grey.shape[0]], pad

    def _run(self, net: Any, x: np.ndarray, g: np.ndarray | None = None) -> np.ndarray:
        """One network (torch module or OpenVinoNet) on a prepared input, in this colorizer's
        precision; float32 numpy out."""
        if isinstance(net, openvino_net.OpenVinoNet):
            return net(x) if g is None else net(x, g)
        gt = None if g is None else torch.from_numpy(np.ascontiguousarray(g)).to(self.device)
        args = () if gt is None else (gt,)
        if self.device.type == "cuda" and self.precision == "fp16":
            y = net(self._tensor(x).half(), *(a.half() for a in args))
        elif self.precision == "bf16":
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16):
                y = net(self._tensor(x), *args)
        else:
            y = net(self._tensor(x), *args)
        return y.float().cpu().numpy()

    @torch.inference_mode()
    def predict(self, grey: np.ndarray, pad_to: int = 0, guide: np.ndarray | None = None,
                second_scale: float = 0.0) -> np.ndarray:
        """grey: (N, H, W) float32 in [0, 1] -> ab / AB_SCALE (N, H, W, 2) float32.
        guide: (N, H, W, 3) colour guide (a * conf, b * conf, conf) or None, for guided models.

        `pad_to`: run the network on exactly this many frames (padding with blanks). Convolution
        libraries pick kernels by batch size, and bf16 results differ in the last bits between
        kernels; a fixed batch makes a frame's colour independent of where the batch ends
        (chunk edges, the end of the film) and of its neighbours in the batch.

        `second_scale` (0: off): frames without a guide are also coloured enlarged this many
        times, and the two predictions averaged. The network names things best at about the size
        its training photos showed them; a wide shot's small figures are recognised only when
        enlarged, a close-up's surfaces only at the working size. Measured (MODEL_CARD.md, session
        13): the dev photos +0.19 dB at the same colourfulness, the dev clips -0.19 dB (a warm cast
        on neutral close-ups grows), so it is off by default. Guided frames keep one scale: their
        colour is the guide's, as measured."""
        ab = self._predict_once(grey, pad_to, guide)
        n_real, h, w = grey.shape
        if second_scale > 0:
            unguided = [i for i in range(n_real) if guide is None or not guide[i, ..., 2].any()]
            if unguided:
                # Only the unguided frames: pad_to keeps each frame's colour independent of the batch.
                ab_big = self._predict_once(_enlarge(grey[unguided], second_scale), pad_to, None)
                for i, big in zip(unguided, ab_big):
                    ab[i] = 0.5 * (ab[i] + cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA))
        if guide is not None and self.takes_guide:
            # The network mostly colours the hinted pixels themselves; carry each hint's
            # correction to the similar pixels around it (measured: see hints.py).
            for i in range(n_real):
                ab[i] = spread_hints(ab[i], guide[i], grey[i])
        return ab

    def _predict_once(self, grey: np.ndarray, pad_to: int, guide: np.ndarray | None) -> np.ndarray:
        """The network's ab at the given size (see predict), before hint spreading."""
        n_real = grey.shape[0]
        if pad_to > n_real and guide is not None:
            guide = np.concatenate([guide, np.zeros((pad_to - n_real, *guide.shape[1:]), guide.dtype)])
        x, (ph, pw) = self._input(grey, pad_to)
        h, w = grey.shape[1:]
        g = None
        if guide is not None and self.takes_guide:
            # Outside the frame there is no hint: zeros, not a reflection.
            g = np.pad(np.ascontiguousarray(guide, np.float32).transpose(0, 3, 1, 2),
                       ((0, 0), (0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)))
        y = self._run(self.net if self.ov_net is None else self.ov_net, x, g)
        if self.ov_net is not None and self.precision == "bf16" and self.bf16_gain != 1.0:
            y *= self.bf16_gain  # bf16's colour shift, measured at export (bf16_chroma_gain)
        return np.ascontiguousarray(y[:n_real, :, ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w].transpose(0, 2, 3, 1))

"""The generator run by OpenVINO on the CPU: 2.5x torch's speed in f32, 7x in bf16 (measured,
benchmarks/model_speed.py), with the same outputs (f32: within 5e-7).

The torch module is converted once per process (about 4 s) and the converted model is cached in
the user's cache directory, keyed by the weights, the architecture and the OpenVINO version, so
later processes and Ray actors only compile it (about 0.5 s). A broken or missing cache entry is
rebuilt, never an error. The conversion traces the network: EfficientNet's TF-"same" padding is
computed from the input size in Python and frozen by the trace, which is harmless because the
inputs are always padded to multiples of 32, where that padding does not depend on the size
(tests/test_openvino.py compares outputs with torch at several sizes and aspect ratios).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import shutil
import tempfile
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from .errors import WeightsError

if TYPE_CHECKING:  # imported lazily at run time: a GPU image may not have it
    import openvino as ov

log = logging.getLogger(__name__)

MAX_SHAPES = 16  # compiled input shapes kept per network


def available() -> bool:
    """Whether OpenVINO can be imported (a default dependency, but a GPU image may lack it)."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def cpu_has_bf16() -> bool:
    """Whether OpenVINO runs bf16 natively on this CPU (AVX512-BF16 or AMX); elsewhere it
    would emulate it, slower than f32."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def cache_dir() -> Path:
    """VIDCOLOR_CACHE_DIR, else $XDG_CACHE_HOME/vidcolor, else ~/.cache/vidcolor."""
    if os.environ.get("VIDCOLOR_CACHE_DIR"):
        return Path(os.environ["VIDCOLOR_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vidcolor"


def model_key(net: nn.Module) -> str:
    """A hash of what the converted model depends on: the module's kind, weights and
    architecture, and the OpenVINO version."""
    import openvino as ov

    h = hashlib.sha256(f"{type(net).__name__}|{net.cfg}|{ov.__version__}".encode())
    for name, t in net.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


def _convert(net: nn.Module, guide_channels: int) -> ov.Model:
    import openvino as ov

    x = torch.zeros(1, 1, 64, 64)
    example: tuple[torch.Tensor, ...] = (x,)
    shapes = [ov.PartialShape([-1, 1, -1, -1])]
    if guide_channels:
        example = (x, torch.zeros(1, guide_channels, 64, 64))
        shapes.append(ov.PartialShape([-1, guide_channels, -1, -1]))
    # The converter reads weights as contiguous memory: a channels_last module converts to garbage.
    net = copy.deepcopy(net).eval().to(memory_format=torch.contiguous_format)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's notes on the frozen padding (see above)
        return ov.convert_model(net, example_input=example, input=shapes)


def load_or_convert(net: nn.Module, guide_channels: int, cache: Path | None = None) -> ov.Model:
    """The converted model, read from the cache when it holds a readable one, else converted and
    cached. Always read back from the saved files: a freshly converted model and one read from
    disk differ in the last bits, and every process of a job must compute the same colours."""
    import openvino as ov

    core = ov.Core()
    cache = cache_dir() if cache is None else cache
    entry = cache / "openvino" / f"{model_key(net)}-g{guide_channels}"
    xml = entry / "model.xml"
    if xml.is_file():
        try:
            return core.read_model(xml)
        except Exception as err:  # any damage to the cached files: convert again
            log.warning("OpenVINO cache entry %s unreadable (%s); converting again", entry, err)
            shutil.rmtree(entry, ignore_errors=True)
    model = _convert(net, guide_channels)
    tmp: Path | None = None
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".part-", dir=entry.parent))
        ov.save_model(model, tmp / "model.xml", compress_to_fp16=False)
        shutil.rmtree(entry, ignore_errors=True)
        os.replace(tmp, entry)  # the whole entry at once: a reader never sees half of it
        return core.read_model(xml)
    except Exception as err:  # read-only home, a file in the way, a full disk: no cache this time
        log.warning("cannot cache the OpenVINO model in %s (%s)", entry.parent, err)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            ov.save_model(model, Path(scratch) / "model.xml", compress_to_fp16=False)
            return core.read_model(Path(scratch) / "model.xml")
    except Exception as err:
        raise WeightsError(f"cannot prepare the OpenVINO model ({err}); try --backend torch") from err


class OpenVinoNet:
    """Callable like the generator, on numpy arrays: (N, 1, H, W) grey in [-1, 1] and, for a
    guided net (`guide_channels` > 0), an optional (N, C, H, W) guide -> (N, 2, H', W') ab.
    bf16 runs on CPUs that have it natively."""

    def __init__(self, net: nn.Module, precision: str, guide_channels: int = 0, threads: int = 0,
                 cache: Path | None = None) -> None:
        import openvino as ov

        if precision not in ("fp32", "bf16"):
            raise ValueError(f"OpenVINO runs fp32 or bf16, not {precision}")
        self.guide_channels = guide_channels
        self.precision = precision
        self.model = load_or_convert(net, guide_channels, cache)
        self.config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
                       "PERFORMANCE_HINT": "LATENCY"}
        if threads > 0:
            self.config["INFERENCE_NUM_THREADS"] = threads
        self.core = ov.Core()
        self.requests: OrderedDict[tuple[int, ...], ov.InferRequest] = OrderedDict()

    def _request(self, shape: tuple[int, ...]) -> ov.InferRequest:
        """An inference request compiled for exactly this input shape: static shapes run 1.4x
        faster than a dynamic model (measured, 8 x 160x192, bf16). A job has one shape (fixed
        batch, fixed working size), so it compiles once (about 0.5 s); every shape always gets
        the same compiled model, so a frame's colour does not depend on what ran before."""
        req = self.requests.get(shape)
        if req is None:
            model = self.model.clone()
            shapes = {model.inputs[0].any_name: list(shape)}
            if self.guide_channels:
                shapes[model.inputs[1].any_name] = [shape[0], self.guide_channels, *shape[2:]]
            model.reshape(shapes)
            req = self.core.compile_model(model, "CPU", self.config).create_infer_request()
            self.requests[shape] = req
            if len(self.requests) > MAX_SHAPES:  # many photo sizes in an evaluation: bound the memory
                self.requests.popitem(last=False)
        else:
            self.requests.move_to_end(shape)
        return req

    def __call__(self, x: np.ndarray, guide: np.ndarray | None = None) -> np.ndarray:
        inputs = [np.ascontiguousarray(x, np.float32)]
        if self.guide_channels:
            if guide is None:  # as the torch module does: no guide = zero channels
                guide = np.zeros((x.shape[0], self.guide_channels, *x.shape[2:]), np.float32)
            inputs.append(np.ascontiguousarray(guide, np.float32))
        # The request's output buffer is reused by the next call: copy it out.
        return self._request(tuple(x.shape)).infer(inputs)[0].copy()

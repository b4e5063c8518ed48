"""Model-only throughput on a GPU at the working sizes of a 1080p source. Run by gpu.sh.

The lent GPU machines have torch (CUDA), numpy and opencv but neither av nor ray, and
`import vidcolor` runs vidcolor/__init__.py, which imports the video pipeline (av). So this
script registers an empty `vidcolor` package pointing at the source folder and imports only
vidcolor.model (torch + vidcolor.errors): the real UnetGenerator and Colorizer, nothing else.

Rows, per (architecture, working size, batch):
  net      fp16 + channels_last forward on a tensor already on the GPU (pure model speed)
  predict  Colorizer.predict from numpy: host->device copy, pad, model, crop, device->host
  graphs   the `net` forward replayed from a CUDA graph (--graphs): launch overhead removed
  compile  torch.compile(net) (--compile, one size and batch: compiling takes tens of seconds)
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def import_vidcolor() -> None:
    """Register `vidcolor` without running vidcolor/__init__.py (which needs av), so that
    vidcolor.model, .train and .data import on a machine with torch but no av or ray."""
    if "vidcolor" not in sys.modules:
        pkg = types.ModuleType("vidcolor")
        pkg.__path__ = [str(ROOT / "vidcolor")]
        sys.modules["vidcolor"] = pkg


def import_model() -> types.ModuleType:
    """vidcolor.model alone: the real UnetGenerator and Colorizer."""
    import_vidcolor()
    import vidcolor.model as model

    assert sys.modules.get("av") is None and sys.modules.get("ray") is None, "the GPU bench must not import av or ray"
    return model


def working_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    # Same rule as vidcolor.pipeline.working_size (not imported: pipeline needs av).
    s = short_side / min(width, height)
    return max(1, round(width * s)), max(1, round(height * s))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Any, device: torch.device, min_s: float, min_iters: int, max_iters: int,
          warmup: int = 3) -> tuple[float, int]:
    """Seconds per call (median of iterations), run until min_s has passed or max_iters."""
    for _ in range(warmup):
        fn()
    sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_iters and (len(times) < min_iters or time.perf_counter() - start < min_s):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), len(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, help="generator checkpoint; default: vidcolor/weights/generator.pt when "
                   "present, else random weights with --arch (speed does not depend on the weights)")
    p.add_argument("--arch", default="32x7", help="NGFxDOWNS list for random models, e.g. 32x7,64x8 (default 32x7)")
    p.add_argument("--source", default="1920x1080", help="source frame size WxH (default 1920x1080)")
    p.add_argument("--short-sides", default="256,512,1080", help="working short sides (default 256,512,1080)")
    p.add_argument("--batches", default="8,16,32")
    p.add_argument("--precision", default="fp16", choices=["fp16", "bf16", "fp32"])
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    p.add_argument("--graphs", action="store_true", help="also time CUDA-graph replay of the forward")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (first short side, batch 16)")
    p.add_argument("--min-seconds", type=float, default=1.5, help="time per measurement (default 1.5)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, for checking the script on a CPU")
    p.add_argument("--out", type=Path, help="JSON results file")
    args = p.parse_args(argv)

    model = import_model()
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels
    src_w, src_h = (int(v) for v in args.source.lower().split("x"))
    sides = [int(v) for v in args.short_sides.split(",")]
    batches = [int(v) for v in args.batches.split(",")]
    min_s = args.min_seconds
    if args.quick:
        src_w, src_h, sides, batches, min_s = 256, 144, [64], [2, 4], 0.2

    nets: list[tuple[str, Any, dict[str, Any]]] = []
    default_weights = ROOT / "vidcolor" / "weights" / "generator.pt"
    weights = args.weights or (default_weights if default_weights.is_file() else None)
    if weights is not None:
        net, meta = model.load_generator(weights)
        nets.append((f"{weights.name} ngf{net.cfg.ngf}x{net.cfg.num_downs}", net, {"weights": str(weights)}))
    else:
        for spec in args.arch.split(","):
            ngf, downs = (int(v) for v in spec.lower().split("x"))
            net = model.UnetGenerator(model.GeneratorConfig(ngf=ngf, num_downs=downs))
            model.init_weights(net)
            nets.append((f"random ngf{ngf}x{downs}", net, {"weights": None}))

    rows: list[dict[str, Any]] = []
    header = f"{'model':<28} {'input (padded)':<22} {'batch':>5} {'mode':<8} {'ms/batch':>9} {'fps':>8} {'GiB':>6}"
    print(header)
    print("-" * len(header))

    def report(name: str, shape: str, batch: int, mode: str, sec: float, iters: int, extra: dict[str, Any]) -> None:
        mem = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else math.nan
        row = {"model": name, "input": shape, "batch": batch, "mode": mode, "ms_per_batch": 1000 * sec,
               "fps": batch / sec, "iters": iters, "peak_gib": None if math.isnan(mem) else round(mem, 2), **extra}
        rows.append(row)
        print(f"{name:<28} {shape:<22} {batch:>5} {mode:<8} {1000 * sec:>9.2f} {batch / sec:>8.1f} {mem:>6.2f}",
              flush=True)

    for name, net, extra in nets:
        col = model.Colorizer(net, device.type, args.precision)
        m = col.multiple
        half = device.type == "cuda" and col.precision == "fp16"
        for side in sides:
            w, h = working_size(src_w, src_h, side)
            ph, pw = h + (-h) % m, w + (-w) % m
            shape = f"{w}x{h} ({pw}x{ph})"
            for batch in batches:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()
                x = torch.rand(batch, 1, ph, pw, device=device) * 2 - 1
                x = x.contiguous(memory_format=torch.channels_last)
                if half:
                    x = x.half()

                def forward(x: torch.Tensor = x, col: Any = col) -> torch.Tensor:
                    with torch.inference_mode():
                        if col.precision == "bf16":
                            with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                                return col.net(x)
                        return col.net(x)

                try:
                    sec, n = timed(forward, device, min_s, 5, 200)
                    report(name, shape, batch, "net", sec, n, extra)
                    grey = np.random.rand(batch, h, w).astype(np.float32)
                    sec, n = timed(lambda grey=grey, col=col: col.predict(grey), device, min_s, 5, 200)
                    report(name, shape, batch, "predict", sec, n, extra)
                    if args.graphs and device.type == "cuda":
                        sec, n = graph_replay(col.net, x, device, min_s)
                        report(name, shape, batch, "graphs", sec, n, extra)
                except torch.cuda.OutOfMemoryError:
                    print(f"{name:<28} {shape:<22} {batch:>5} out of memory", flush=True)
                    rows.append({"model": name, "input": shape, "batch": batch, "mode": "oom"})
                del x
        if args.compile:
            side, batch = sides[0], 16 if 16 in batches else batches[0]
            w, h = working_size(src_w, src_h, side)
            ph, pw = h + (-h) % m, w + (-w) % m
            x = (torch.rand(batch, 1, ph, pw, device=device) * 2 - 1).contiguous(memory_format=torch.channels_last)
            if half:
                x = x.half()
            compiled = torch.compile(col.net)
            t0 = time.perf_counter()
            with torch.inference_mode():
                compiled(x)
            sync(device)
            compile_s = time.perf_counter() - t0

            def run_compiled(x: torch.Tensor = x, compiled: Any = compiled) -> torch.Tensor:
                with torch.inference_mode():
                    return compiled(x)

            sec, n = timed(run_compiled, device, min_s, 5, 200)
            report(name, f"{w}x{h} ({pw}x{ph})", batch, "compile", sec, n, {**extra, "compile_s": compile_s})
            print(f"  (torch.compile took {compile_s:.1f} s)")

    meta = {"python": platform.python_version(), "torch": torch.__version__, "device": str(device),
            "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
            "precision": args.precision, "channels_last": True, "source": f"{src_w}x{src_h}",
            "cudnn_benchmark": device.type == "cuda", "quick": args.quick}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


def graph_replay(net: torch.nn.Module, x: torch.Tensor, device: torch.device, min_s: float) -> tuple[float, int]:
    """Capture one forward in a CUDA graph and time its replay (static input buffer)."""
    static_x = x.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.inference_mode(), torch.cuda.stream(stream):
        for _ in range(3):  # warm up on a side stream before capture, as the CUDA graphs docs ask
            net(static_x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.graph(graph):
        net(static_x)
    return timed(graph.replay, device, min_s, 5, 500)


if __name__ == "__main__":
    sys.exit(main())

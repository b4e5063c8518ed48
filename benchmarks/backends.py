"""torch against OpenVINO, side by side in one run: the network alone, and whole jobs in-process
(the 480p example, vtest.avi, a generated 1080p clip) next to a plain decode + x264 transcode of
the same file (the floor: what any tool that re-encodes the video must spend).

    python benchmarks/backends.py [--repeats 3] [--out benchmarks/backends.json]

Rounds are interleaved (each round runs every row once), so background load hits all rows of a
round alike; medians are reported, every run is kept in the JSON with the load average.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from clips import make_grey_clip  # noqa: E402
from run import transcode_only  # noqa: E402

from vidcolor import openvino_net  # noqa: E402
from vidcolor.config import JobConfig  # noqa: E402
from vidcolor.model import Colorizer, load_generator  # noqa: E402
from vidcolor.pipeline import LocalExecutor, run_job  # noqa: E402
from vidcolor.video import probe  # noqa: E402

log = logging.getLogger("bench")
EXAMPLE = ROOT / "examples" / "steamboat_willie_1928.mp4"
VTEST = ROOT.parent / "shared" / "data" / "eval" / "vtest.avi"
# (backend, precision) rows; "auto" is what a user gets (OpenVINO bf16 where the CPU has it).
RUNTIMES = (("torch", "fp32"), ("openvino", "fp32"), ("openvino", "auto"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--hd-frames", type=int, default=120)
    p.add_argument("--model-batches", type=int, default=10, help="timed batches per model-alone round")
    p.add_argument("--cli-repeats", type=int, default=3,
                   help="rounds of the user's command (embedded Ray) on the 480p example, per backend")
    p.add_argument("--out", type=Path, default=HERE / "backends.json")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import torch

    cfg = JobConfig(allow_colour_input=True)  # vtest.avi is a colour clip: colorized from its luma
    net, meta = load_generator(cfg.weights_path)
    cols = {}
    for backend, precision in RUNTIMES:
        c = Colorizer(net, "cpu", precision, backend=backend)
        c.meta = meta
        cols[f"{backend} {c.precision}"] = c
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        hd = Path(tmp) / "hd1080.mp4"
        make_grey_clip(hd, 1920, 1080, args.hd_frames)
        clips = {"480p example (854x480, 672 frames)": EXAMPLE, "1080p generated": hd}
        if VTEST.exists():
            clips["vtest.avi (768x576, 795 frames)"] = VTEST
        grey = np.random.default_rng(0).random((cfg.batch_size, 144, 256), np.float32)
        model_ms: dict[str, list[float]] = {k: [] for k in cols}
        e2e: dict[str, dict[str, list[float]]] = {clip: {k: [] for k in [*cols, "transcode floor"]} for clip in clips}
        for c in cols.values():
            c.predict(grey, pad_to=cfg.batch_size)  # warm-up (OpenVINO compiles lazily per shape)
        for r in range(args.repeats):
            for name, c in cols.items():
                t0 = time.perf_counter()
                for _ in range(args.model_batches):
                    c.predict(grey, pad_to=cfg.batch_size)
                model_ms[name].append((time.perf_counter() - t0) * 1000 / (args.model_batches * cfg.batch_size))
                log.info("round %d model alone %s: %.2f ms/frame", r + 1, name, model_ms[name][-1])
            for clip, path in clips.items():
                info = probe(path)
                s, n = transcode_only(info, cfg)
                e2e[clip]["transcode floor"].append(n / s)
                for name, c in cols.items():
                    out = Path(tmp) / "out.mp4"
                    t0 = time.perf_counter()
                    res = run_job(path, out, cfg, overwrite=True, restart=True, executor=LocalExecutor(c))
                    e2e[clip][name].append(res.frames / (time.perf_counter() - t0))
                log.info("round %d %s: %s", r + 1, clip,
                         ", ".join(f"{k} {v[-1]:.1f} fps" for k, v in e2e[clip].items()))
        cli = cli_rounds(args.cli_repeats, Path(tmp))
    med = statistics.median
    print(f"\nmodel alone, batch {cfg.batch_size} x 144x256 (padded to 160x256), ms per frame (median of "
          f"{args.repeats}):")
    base = med(model_ms["torch fp32"])
    for k, v in model_ms.items():
        print(f"  {k:16s} {med(v):6.2f} ms  x{base / med(v):.2f}")
    print("\nend to end, in-process (--workers 0), fps (median), and time against the transcode floor:")
    for clip, rows in e2e.items():
        floor = med(rows["transcode floor"])
        print(f"  {clip}")
        for k, v in rows.items():
            print(f"    {k:16s} {med(v):6.1f} fps  {floor / med(v):.2f}x the floor's time")
    if cli:
        print("\nthe user's command on the 480p example (`vidcolor colorize`, default workers = embedded Ray),")
        print("wall time from start to exit, startup included, fps (median):")
        base_cli = med(cli["torch"])
        for k, v in cli.items():
            print(f"    {k:16s} {med(v):6.1f} fps  x{med(v) / base_cli:.2f}")
    args.out.write_text(json.dumps({
        "what": "torch vs OpenVINO: model alone and in-process end to end, rounds interleaved",
        "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "torch_threads": torch.get_num_threads(), "cpu_bf16": openvino_net.cpu_has_bf16()},
        "loadavg_start": load_start, "loadavg_end": os.getloadavg(), "weights_sha256": meta.get("sha256"),
        "config": dataclasses.asdict(cfg),
        "model_ms_per_frame": {k: {"median": med(v), "runs": v} for k, v in model_ms.items()},
        "end_to_end_fps": {clip: {k: {"median": med(v), "runs": v} for k, v in rows.items()}
                           for clip, rows in e2e.items()},
        "cli_480p_fps": {k: {"median": med(v), "runs": v} for k, v in cli.items()},
    }, indent=2) + "\n")


def cli_rounds(repeats: int, tmp: Path) -> dict[str, list[float]]:
    """`vidcolor colorize examples/...mp4 -o out.mp4 --backend B` as a user types it (embedded Ray,
    the default), rounds interleaved: frames / wall seconds of the whole command."""
    with av.open(str(EXAMPLE)) as c:
        frames = sum(1 for pkt in c.demux(video=0) if pkt.size)  # the example's frame count
    fps: dict[str, list[float]] = {"torch": [], "auto": []}
    for r in range(repeats):
        for backend in fps:
            out = tmp / "cli.mp4"
            t0 = time.perf_counter()
            subprocess.run([str(Path(sys.executable).with_name("vidcolor")), "colorize", str(EXAMPLE), "-o", str(out),
                            "--backend", backend, "--overwrite", "--restart"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            fps[backend].append(frames / (time.perf_counter() - t0))
            log.info("round %d the user's command, --backend %s: %.1f fps", r + 1, backend, fps[backend][-1])
    return fps


if __name__ == "__main__":
    main()

"""A training burst on a lent GPU machine: several recipes side by side, one process each.

The lent machines have torch (CUDA), numpy and opencv but neither av nor ray, and only what
travels with the repository (64 MiB): so the photos come as a small WebP folder (see
benchmarks/README.md), every run shares one GPU (a 10 M-parameter U-Net on 128 px crops is far
from filling an H200; the CPU data loader is each run's limit), each stops on a time budget, and
what comes back is int8 exports (10 MiB each) of chosen snapshots, to be measured here with
`vidcolor eval`.

    # here: 38 MiB of photos into a folder that .git/info/exclude ignores ("/.gpu/")
    python benchmarks/gpu_train.py --pack ../shared/data/train 38 --photos .gpu/photos
    # there (device run with carry [".gpu"]):
    python3 benchmarks/gpu_train.py --photos .gpu/photos --minutes 5.5 --out $OUT \\
        --run gan configs/train_cpu_gan.toml keep=2 \\
        --run gan_bs32 configs/train_cpu_gan.toml batch_size=32 ndf=64

Each `--run NAME CONFIG [key=value ...]` trains CONFIG with the overrides (values in TOML
syntax); `keep=N` exports the last N of its snapshots spread evenly over the run (default 1).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tarfile
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_bench import ROOT, import_vidcolor

log = logging.getLogger("gpu_train")


def parse_run(spec: list[str]) -> tuple[str, Path, dict[str, Any], int]:
    name, config, *pairs = spec
    overrides = tomllib.loads("\n".join(pairs)) if pairs else {}
    keep = int(overrides.pop("keep", 1))
    return name, Path(config), overrides, keep


def cuda_check(weights: Path) -> dict[str, Any]:
    """The inference path on CUDA (fp16, bf16) against the CPU in fp32, on the shipped model."""
    import_vidcolor()
    from vidcolor.model import Colorizer, load_generator

    grey = np.random.default_rng(0).random((4, 144, 256), dtype=np.float32)
    net, _ = load_generator(weights)
    ref = Colorizer(net, "cpu", "fp32").predict(grey)
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"}
    for precision in ("fp16", "bf16"):
        net, _ = load_generator(weights)
        got = Colorizer(net, "cuda", precision).predict(grey)
        # In ab units (predictions are ab / 110).
        out[f"max_abs_diff_ab_{precision}"] = float(np.abs(got - ref).max() * 110)
        out[f"mean_abs_diff_ab_{precision}"] = float(np.abs(got - ref).mean() * 110)
    return out


def child(name: str, config: Path, overrides: dict[str, Any], photos: Path, work: Path, minutes: float,
          profile_steps: int = 0, out: Path | None = None) -> None:
    import_vidcolor()
    from vidcolor.config import TrainConfig, load_config
    from vidcolor.train import train

    torch.backends.cudnn.benchmark = True  # fixed crop size: let cuDNN pick its fastest kernels
    cfg = load_config(TrainConfig, config, {
        "data": [str(photos)], "cache_dir": str(work / "cache"), "out_dir": str(work / name),
        "checkpoint_every": 10**9, "threads": 2, **overrides})
    t0 = time.time()
    if profile_steps:
        profile(name, cfg, profile_steps, out or work)
        return
    train(cfg, max_minutes=minutes)
    log.info("%s: trained for %.1f s", name, time.time() - t0)


def profile(name: str, cfg: Any, steps: int, out: Path) -> None:
    """`steps` steps of the recipe under torch.profiler, after 10 untimed ones: where a step's time
    goes (train.py labels data, matched_guides, step and ema), as profile_NAME.txt. Session 14's
    matched recipe ran 20-40x slower per step than session 3's unguided one on the same kind of
    machine, with the GPU mostly idle: look here before a long run."""
    import dataclasses

    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from vidcolor.train import train

    cuda = torch.cuda.is_available()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    cfg = dataclasses.replace(cfg, steps=cfg.start_step + 10 + steps, minutes=0.0, lr_decay_from=0,
                              out_dir=str(Path(cfg.out_dir).with_name(Path(cfg.out_dir).name + "_profile")))
    prof = torch_profile(activities=acts)
    done = 0
    t0 = time.time()

    def hook() -> None:  # recording from the 11th step: start-up (workers, kernel choice) left out
        nonlocal done, t0
        done += 1
        if done == 10:
            t0 = time.time()
            prof.start()
        elif done == 10 + steps:
            if cuda:
                torch.cuda.synchronize()
            prof.stop()

    train(cfg, step_hook=hook)
    seconds = time.time() - t0
    table = prof.key_averages().table(sort_by="self_cuda_time_total" if cuda else "self_cpu_time_total",
                                      row_limit=30)
    labels = prof.key_averages().table(sort_by="cpu_time_total", row_limit=12)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"profile_{name}.txt").write_text(f"{steps} profiled steps, {seconds / steps:.3f} s each\n\n"
                                             f"{labels}\n\n{table}\n")
    log.info("%s: profile written to %s", name, out / f"profile_{name}.txt")


def export(name: str, run_dir: Path, keep: int, out: Path) -> list[str]:
    from vidcolor.model import export_generator, load_generator

    # Numbered snapshots, then the state at the time limit (generator_latest.pt).
    snaps = sorted(run_dir.glob("generator_0*.pt")) + sorted(run_dir.glob("generator_latest.pt"))
    if not snaps:
        return []
    # The last one and evenly spaced earlier ones: how quality moves along the run.
    picks = sorted({snaps[round((len(snaps) - 1) * (k + 1) / keep)] for k in range(keep)})
    names = []
    for s in picks:
        dest = out / f"{name}_{load_generator(s)[1].get('steps', s.stem)}.pt"
        export_generator([s], dest)
        names.append(dest.name)
    return names


def pack_photos(data: list[str], dest: Path, mib: float, seed: int = 123) -> int:
    """Here, before a burst: a random subset of the training photos, as the 144 px squares the
    training cache holds, saved as WebP (quality 90, ~6.2 KB each) up to `mib` MiB in all, so that
    they travel with the repository (the lent machines take 64 MiB in all)."""
    import cv2

    import_vidcolor()
    from vidcolor.data import load_image_cache

    photos = load_image_cache(data, 144, ROOT / ".cache")
    dest.mkdir(parents=True, exist_ok=True)
    total = n = 0
    for i in np.random.default_rng(seed).permutation(len(photos)):
        bgr = cv2.cvtColor(np.asarray(photos[i]), cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".webp", bgr, [cv2.IMWRITE_WEBP_QUALITY, 90])
        if not ok or total + len(buf) > mib * 2**20:
            break
        (dest / f"{i:05d}.webp").write_bytes(buf.tobytes())
        total, n = total + len(buf), n + 1
    log.info("packed %d photos, %.1f MiB, into %s", n, total / 2**20, dest)
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pack", nargs=2, metavar=("DATA_DIR", "MIB"),
                   help="here: write a random subset of DATA_DIR's photos into --photos, MIB MiB at most, and stop")
    p.add_argument("--photos", type=Path, required=True, help="folder of training photos")
    p.add_argument("--minutes", type=float, help="training time of every run (they run at once)")
    p.add_argument("--out", type=Path, help="where exports, logs and results go")
    p.add_argument("--work", type=Path, default=Path("/tmp/gpu_train"), help="checkpoints, caches")
    p.add_argument("--run", nargs="+", action="append", metavar="NAME CONFIG [k=v]")
    p.add_argument("--profile", type=int, default=0, metavar="STEPS",
                   help="instead of training: profile STEPS steps of each run (profile_NAME.txt in --out)")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.pack:
        pack_photos([args.pack[0]], args.photos, float(args.pack[1]))
        return 0
    if not (args.run and args.minutes and args.out):
        p.error("--run, --minutes and --out are needed for a burst")
    runs = [parse_run(r) for r in args.run]
    if args.child:
        name, config, overrides, _ = parse_run(args.child)
        child(name, config, overrides, args.photos, args.work, args.minutes, args.profile, args.out)
        return 0

    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"torch": torch.__version__}
    try:
        results["cuda_check"] = cuda_check(ROOT / "vidcolor" / "weights" / "generator.pt")
    except Exception as err:  # a failed check must not cost the training burst
        results["cuda_check"] = f"failed: {err!r}"
    log.info("cuda check: %s", results["cuda_check"])

    import_vidcolor()
    from vidcolor.data import load_image_cache

    t0 = time.time()
    photos = load_image_cache([args.photos], 144, args.work / "cache")  # once, before the runs share it
    results["photos"] = len(photos)
    log.info("cached %d photos in %.1f s", len(photos), time.time() - t0)

    env = {**os.environ, "TQDM_MININTERVAL": "30", "PYTHONUNBUFFERED": "1"}
    procs = []
    for spec in args.run:
        logf = open(args.work / f"{spec[0]}.log", "w")
        cmd = [sys.executable, __file__, "--photos", str(args.photos), "--minutes", str(args.minutes),
               "--out", str(args.out), "--work", str(args.work), "--profile", str(args.profile),
               "--run", *spec, "--child", *spec]
        procs.append((spec[0], subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=ROOT)))
    for name, proc in procs:
        results[f"rc_{name}"] = proc.wait()
        log.info("%s exited %d", name, results[f"rc_{name}"])

    for name, _config, _overrides, keep in runs:
        try:
            results[f"exported_{name}"] = export(name, args.work / name, keep, args.out)
        except Exception as err:
            results[f"exported_{name}"] = f"failed: {err!r}"
        log.info("%s: %s", name, results[f"exported_{name}"])
    (args.work / "results.json").write_text(json.dumps(results, indent=1))
    with tarfile.open(args.out / "logs.tar.gz", "w:gz") as tar:
        tar.add(args.work / "results.json", "results.json")
        for name, *_ in runs:
            tar.add(args.work / f"{name}.log", f"{name}.log")
            if (args.work / name / "log.csv").exists():
                tar.add(args.work / name / "log.csv", f"{name}.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())

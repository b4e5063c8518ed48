"""vidcolor benchmarks: one command, every row measured in the same run, medians of repeats.

    python benchmarks/run.py                      # full run (tens of minutes on 2 CPU cores)
    python benchmarks/run.py --quick              # tiny clips, 1 repeat: a smoke test (~1-2 min)
    python benchmarks/run.py --skip ray,memory    # leave sections out

Prints a table and writes JSON (benchmarks/results.json by default). What each row means is in
benchmarks/README.md. Repeats are interleaved (one round runs every in-process measurement
once), so a change in background load hits all rows of a round alike and the ratios stay fair.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import logging
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from clips import make_grey_clip, trimmed_copy  # noqa: E402
from reference import run_reference  # noqa: E402

from vidcolor import pipeline  # noqa: E402
from vidcolor.color import small_grey, working_size  # noqa: E402
from vidcolor.config import DEFAULT_WEIGHTS, JobConfig, TrainConfig, load_config  # noqa: E402
from vidcolor.model import Colorizer  # noqa: E402
from vidcolor.pipeline import LocalExecutor, prefetch, run_job  # noqa: E402
from vidcolor.temporal import TemporalSmoother  # noqa: E402
from vidcolor.video import SourceInfo, decode_chunk, probe, read_chunk  # noqa: E402

log = logging.getLogger("bench")

DEFAULT_CLIP = ROOT.parent / "shared" / "data" / "eval" / "vtest.avi"
TRAIN_RECIPE = ROOT / "configs" / "train_cpu.toml"
T = TypeVar("T")
SECTIONS = ("local", "floor", "reference", "hd", "ray", "memory", "train")


# --- results ---------------------------------------------------------------------------------


@dataclass
class Row:
    key: str
    label: str
    unit: str
    runs: list[float] = field(default_factory=list)
    note: str = ""
    derived: float | None = None  # for ratios computed from other rows' medians

    @property
    def median(self) -> float:
        if self.derived is not None:
            return self.derived
        return statistics.median(self.runs) if self.runs else math.nan


class Results:
    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.details: dict[str, Any] = {}

    def add(self, key: str, label: str, unit: str, value: float, note: str = "") -> None:
        row = self.rows.setdefault(key, Row(key, label, unit, note=note))
        row.runs.append(float(value))
        if note:
            row.note = note

    def derive(self, key: str, label: str, unit: str, value: float, note: str = "") -> None:
        self.rows[key] = Row(key, label, unit, note=note, derived=float(value))

    def med(self, key: str) -> float:
        return self.rows[key].median if key in self.rows else math.nan

    def table(self) -> str:
        def fmt(v: float) -> str:
            if math.isnan(v):
                return "-"
            if v == 0 or abs(v) >= 100:
                return f"{v:.0f}"
            return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"

        lines = [("metric", "median", "unit", "runs", "notes")]
        for r in self.rows.values():
            runs = "derived" if r.derived is not None else " ".join(fmt(v) for v in r.runs)
            lines.append((r.label, fmt(r.median), r.unit, runs, r.note))
        widths = [max(len(line[i]) for line in lines) for i in range(4)]
        out = []
        for i, line in enumerate(lines):
            out.append(" | ".join(c.ljust(w) if j != 1 else c.rjust(w) for j, (c, w) in
                                  enumerate(zip(line[:4], widths, strict=True))) + " | " + line[4])
            if i == 0:
                out.append("-+-".join("-" * w for w in widths) + "-+-" + "-" * 5)
        return "\n".join(out)

    def to_json(self) -> list[dict[str, Any]]:
        return [{"key": r.key, "label": r.label, "unit": r.unit, "median": None if math.isnan(r.median) else r.median,
                 "runs": r.runs, "derived": r.derived is not None, "note": r.note} for r in self.rows.values()]


# --- helpers ---------------------------------------------------------------------------------


def _now() -> float:
    return time.perf_counter()


def _sync(colorizer: Colorizer) -> None:
    if colorizer.device.type == "cuda":
        import torch

        torch.cuda.synchronize()


def _vm(field_name: str) -> int:
    """A /proc/self/status memory field in kB (0 where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _git() -> dict[str, Any]:
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--", "vidcolor"))}
    except (OSError, subprocess.SubprocessError):
        return {}


def in_worker_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run fn in a fresh thread and return its result. The pipeline calls the model from a
    prefetch thread; on a loaded 2-core machine torch CPU inference called from the main thread
    measured 2-3x slower (OpenMP team of the main thread), so the floors and the reference call
    the model from a worker thread too, and a separate row shows the main-thread figure."""
    box: list[Any] = []

    def target() -> None:
        try:
            box.append(("ok", fn(*args)))
        except BaseException as err:  # re-raised in the caller
            box.append(("err", err))

    t = threading.Thread(target=target, name="bench-worker")
    t.start()
    t.join()
    kind, value = box[0]
    if kind == "err":
        raise value
    return value


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


@contextlib.contextmanager
def frame_latency_probe(sink: list[float]) -> Iterator[None]:
    """Record, for every frame written, the time from leaving the decoder to being handed to
    the encoder (the span the pipeline controls: queues, batching, model, smoothing, compose).

    Wraps the two module globals that process_chunk uses; vidcolor itself is unchanged."""
    orig_decode, orig_encoder = pipeline.decode_chunk, pipeline.SegmentEncoder
    decoded: dict[int, float] = {}

    def timed_decode(*args: Any, **kwargs: Any) -> Iterator[tuple[int, np.ndarray]]:
        for pts, y in orig_decode(*args, **kwargs):
            decoded[pts] = _now()
            yield pts, y

    class TimedEncoder(orig_encoder):  # type: ignore[misc, valid-type]
        def write(self, pts: int, y: np.ndarray, u: np.ndarray, v: np.ndarray) -> None:
            t = decoded.pop(pts, None)
            super().write(pts, y, u, v)
            if t is not None:
                sink.append(_now() - t)

    pipeline.decode_chunk, pipeline.SegmentEncoder = timed_decode, TimedEncoder
    try:
        yield
    finally:
        pipeline.decode_chunk, pipeline.SegmentEncoder = orig_decode, orig_encoder


# --- measurements ----------------------------------------------------------------------------


def end_to_end(src: Path, out: Path, cfg: JobConfig, executor: Any) -> tuple[float, int]:
    """Wall time of a whole job: probe, plan, decode, model, smoothing, encode, join + audio."""
    t0 = _now()
    res = run_job(src, out, cfg, overwrite=True, restart=True, executor=executor)
    return _now() - t0, res.frames


@dataclass
class Predecoded:
    info: SourceInfo
    size: tuple[int, int]
    greys: list[np.ndarray]  # small normalised luma at working resolution
    resize_s: float  # time small_grey took for all frames


def predecode(src: Path, cfg: JobConfig) -> Predecoded:
    info = probe(src, cfg.video_stream)
    size = working_size(info.width, info.height, cfg.working_size)
    greys, resize_s = [], 0.0
    for _, y in decode_chunk(read_chunk(info, info.start_pts, None, True), info, info.start_pts, None):
        t0 = _now()
        greys.append(small_grey(y, size, info))
        resize_s += _now() - t0
    return Predecoded(info, size, greys, resize_s)


def model_only(colorizer: Colorizer, greys: list[np.ndarray], batch: int,
               second_scale: float = 0.0) -> tuple[float, list[float]]:
    """Colorizer.predict on pre-decoded small frames in the job's batch size (and the job's
    second scale): (total s, per-batch s)."""
    per_batch = []
    for i in range(0, len(greys), batch):
        t0 = _now()
        colorizer.predict(np.stack(greys[i : i + batch]), second_scale=second_scale)
        _sync(colorizer)
        per_batch.append(_now() - t0)
    return sum(per_batch), per_batch


def transcode_only(info: SourceInfo, cfg: JobConfig) -> tuple[float, int]:
    """Decode (read_chunk + decode_chunk, threaded as the pipeline does) and encode with the
    job's encoder settings, neutral U/V, no model: the video I/O floor."""
    from vidcolor.video import SegmentEncoder

    t0 = _now()
    source = read_chunk(info, info.start_pts, None, from_start=True)
    enc = SegmentEncoder(io.BytesIO(), "mp4", info, cfg)
    dtype = np.uint8 if enc.bits <= 8 else np.uint16
    neutral = np.full((enc.chroma_size[1], enc.chroma_size[0]), 1 << (enc.bits - 1), dtype)
    for pts, y in prefetch(decode_chunk(source, info, info.start_pts, None), 2 * cfg.batch_size):
        enc.write(pts, y, neutral, neutral)
    enc.close()
    return _now() - t0, enc.frames


def colour_math_only(pre: Predecoded, cfg: JobConfig, colorizer: Colorizer) -> float:
    """small_grey + temporal smoothing + chroma composition (ab_to_planes), no model, no codec.
    ab comes from one real batch, reused: the cost does not depend on its values."""
    import av

    from vidcolor.color import ab_to_planes
    from vidcolor.video import output_pix_fmt

    fmt = av.VideoFormat(output_pix_fmt(pre.info, cfg.encoder))
    chroma = (fmt.chroma_width(pre.info.width), fmt.chroma_height(pre.info.height))
    bits = fmt.components[0].bits
    abs_ = colorizer.predict(np.stack(pre.greys[: cfg.batch_size]))
    smoother = TemporalSmoother(cfg.smoothing_strength, cfg.scene_cut_threshold) if cfg.smoothing else None
    t0 = _now()
    for i, g in enumerate(pre.greys):
        ab = np.ascontiguousarray(abs_[i % len(abs_)])
        if smoother is not None:
            ab = smoother(g, ab)
        ab_to_planes(g, ab, chroma, bits, pre.info.full_range, pre.info.matrix)
    return _now() - t0 + pre.resize_s


def measure_memory(src: Path, out: Path, cfg: JobConfig) -> dict[str, Any]:
    """Colorize `src` in a fresh interpreter and return its own VmHWM (peak RSS) and more.

    wait4's ru_maxrss is kept in the JSON but is not the figure: on Linux, exec carries the old
    address space's high-water mark into the child's maxrss, and subprocess forks/vforks from
    this (large) process, so ru_maxrss reads at least this process's RSS."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child-colorize", str(src), str(out),
           json.dumps(dataclasses.asdict(cfg))]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    text = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"memory child failed (exit {p.returncode}) on {src}")
    child = json.loads(text.strip().splitlines()[-1])
    child["ru_maxrss_kb"] = usage.ru_maxrss  # Linux: kB
    return child


def child_colorize(src: str, out: str, cfg_json: str) -> int:
    """Entry point of the memory child: load the model, run one job, report memory as JSON."""
    cfg = JobConfig(**json.loads(cfg_json)).validate()
    colorizer = Colorizer.for_job(cfg)
    rss_loaded = _vm("VmRSS")
    t0 = _now()
    res = run_job(Path(src), Path(out), cfg, overwrite=True, restart=True, executor=LocalExecutor(colorizer))
    print(json.dumps({"frames": res.frames, "seconds": _now() - t0, "rss_after_load_kb": rss_loaded,
                      "vmhwm_kb": _vm("VmHWM")}))
    return 0


def train_throughput(recipe: Path, steps: int, warmup: int, rounds: int, res: Results) -> dict[str, Any]:
    """Images/s of the recipe's training step on random tensors (no data loading): the generator
    alone on L1 (the NoGAN warm start) and the full G(L1 + GAN) + D step, as vidcolor/train.py
    runs them (bf16 autocast where the recipe says so, channels_last, Adam)."""
    import torch

    from vidcolor.model import GeneratorConfig, PatchDiscriminator, UnetGenerator, init_weights
    from vidcolor.train import train_step

    tcfg = load_config(TrainConfig, recipe)
    threads_before = torch.get_num_threads()
    if tcfg.threads:
        torch.set_num_threads(tcfg.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    g = UnetGenerator(GeneratorConfig(ngf=tcfg.ngf, num_downs=tcfg.num_downs)).to(device)
    d = PatchDiscriminator(ndf=tcfg.ndf).to(device)
    init_weights(g)
    init_weights(d)
    g = g.to(memory_format=torch.channels_last).train()
    d = d.to(memory_format=torch.channels_last).train()
    opt_g = torch.optim.Adam(g.parameters(), lr=tcfg.lr, betas=(tcfg.beta1, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=tcfg.lr, betas=(tcfg.beta1, 0.999))
    b, c = tcfg.batch_size, tcfg.crop
    x = (torch.rand(b, 1, c, c, device=device) * 2 - 1).contiguous(memory_format=torch.channels_last)
    y = ((torch.rand(b, 2, c, c, device=device) * 2 - 1) * 0.5).contiguous(memory_format=torch.channels_last)

    def step(use_gan: bool) -> None:  # exactly train.py's step
        train_step(g, d, opt_g, opt_d, x, y, tcfg, use_gan)
        if device.type == "cuda":
            torch.cuda.synchronize()

    recipe_desc = (f"{recipe.name}: ngf{tcfg.ngf} {tcfg.num_downs}-down, D ndf{tcfg.ndf}, {c}px crop, "
                   f"batch {b}, {tcfg.precision}, {torch.get_num_threads()} threads")
    try:
        for use_gan, key, label in ((False, "train_l1", "train L1-only step"),
                                    (True, "train_gan", "train GAN+L1 step (G+D)")):
            for _ in range(warmup):
                step(use_gan)
            for _ in range(rounds):
                t0 = _now()
                for _ in range(steps):
                    step(use_gan)
                dt = _now() - t0
                res.add(key, label, "img/s", b * steps / dt,
                        f"{dt / steps:.3f} s/step; random tensors, no data loading")
    finally:
        torch.set_num_threads(threads_before)
    return {"recipe": recipe_desc, "steps_per_round": steps, "rounds": rounds, "warmup_steps": warmup}


# --- the run ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="vidcolor benchmarks: prints a table, writes JSON")
    p.add_argument("--quick", action="store_true", help="tiny clips and 1 repeat: checks the script runs (~1-2 min)")
    p.add_argument("--repeats", type=int, default=None, help="rounds per measurement; medians reported (default 3)")
    p.add_argument("--out", type=Path, default=HERE / "results.json", help="JSON results file")
    p.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="real clip for the main rows (default vtest.avi)")
    p.add_argument("--max-frames", type=int, default=None, help="use the first N frames of --clip (0 = all)")
    p.add_argument("--prep", choices=["grey", "copy"], default="grey",
                   help="how the trimmed clip is made: re-encode luma as grey H.264 (default) or stream copy")
    p.add_argument("--weights", type=Path, help=f"generator checkpoint (default {DEFAULT_WEIGHTS} when present)")
    p.add_argument("--config", type=Path, help="TOML job config (default: JobConfig defaults)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None)
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--working-size", type=int, default=None)
    p.add_argument("--hd-frames", type=int, default=None, help="frames of the generated 1080p clip (default 120)")
    p.add_argument("--mem-seconds", default=None, help="lengths of the 720p memory clips, s (default 10,60)")
    p.add_argument("--train-steps", type=int, default=None, help="timed training steps per round (default 10)")
    p.add_argument("--skip", default="", help=f"comma-separated sections to leave out: {','.join(SECTIONS)}")
    p.add_argument("--work-dir", type=Path, default=None, help="where clips and outputs go (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the work dir")
    p.add_argument("--child-colorize", nargs=3, metavar=("SRC", "OUT", "CFG_JSON"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    q = args.quick
    args.repeats = args.repeats or (1 if q else 3)
    args.max_frames = args.max_frames if args.max_frames is not None else (40 if q else 0)
    args.hd_frames = args.hd_frames or (8 if q else 120)
    args.mem_seconds = [float(s) for s in (args.mem_seconds or ("2,6" if q else "10,60")).split(",")]
    args.train_steps = args.train_steps or (2 if q else 10)
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = args.skip - set(SECTIONS)
    if unknown:
        p.error(f"unknown --skip section(s): {', '.join(sorted(unknown))}; known: {', '.join(SECTIONS)}")
    return args


def job_config(args: argparse.Namespace) -> JobConfig:
    weights = args.weights
    if weights is None:
        if not DEFAULT_WEIGHTS.is_file():
            raise SystemExit(f"no shipped model at {DEFAULT_WEIGHTS}; pass --weights PATH")
        weights = DEFAULT_WEIGHTS
    overrides = {"weights": str(weights), "device": args.device, "precision": args.precision,
                 "batch_size": args.batch_size, "working_size": args.working_size,
                 "allow_colour_input": True}
    return load_config(JobConfig, args.config, overrides)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child_colorize:
        logging.basicConfig(level=logging.WARNING)
        return child_colorize(*args.child_colorize)
    logging.basicConfig(level=logging.INFO, format="bench: %(message)s")
    logging.getLogger("vidcolor").setLevel(logging.WARNING)
    cfg = job_config(args)
    work = Path(tempfile.mkdtemp(prefix="vidcolor-bench-", dir=args.work_dir))
    t_start = _now()
    try:
        res, meta = run_all(args, cfg, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    meta["total_s"] = round(_now() - t_start, 1)
    meta["loadavg_end"] = os.getloadavg()
    print()
    print(res.table())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": res.to_json(), "details": res.details}, indent=2) + "\n")
    log.info("wrote %s (%.0f s in all)", args.out, meta["total_s"])
    return 0


def run_all(args: argparse.Namespace, cfg: JobConfig, work: Path) -> tuple[Results, dict[str, Any]]:
    import torch

    res = Results()
    skip = args.skip
    colorizer = Colorizer.for_job(cfg)
    gpu = colorizer.device.type == "cuda"
    meta: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick, "repeats": args.repeats, "python": platform.python_version(),
        "machine": platform.machine(), "cpu_count": os.cpu_count(), "loadavg_start": os.getloadavg(),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "device": str(colorizer.device) + (f" ({torch.cuda.get_device_name()})" if gpu else ""),
        "precision": colorizer.precision, "weights": str(cfg.weights_path),
        "weights_sha256": colorizer.meta.get("sha256"), "model": dataclasses.asdict(colorizer.net.cfg),
        "job_config": dataclasses.asdict(cfg), "git": _git(),
    }

    if args.prep == "grey":
        clip = trimmed_copy(args.clip, work / "clip.mp4", args.max_frames, "grey")
    elif args.max_frames:  # stream copy keeps the codec, so keep a container that holds it
        clip = trimmed_copy(args.clip, work / f"clip{args.clip.suffix}", args.max_frames, "copy")
    else:
        clip = args.clip
    hd = None
    if "hd" not in skip:
        hd = make_grey_clip(work / "hd1080.mp4", 1920, 1080, args.hd_frames, fps=24)
        log.info("generated %s (%d frames, 1920x1080, grey, AAC)", hd.name, args.hd_frames)
    pre = predecode(clip, cfg) if "floor" not in skip else None
    info = probe(clip, cfg.video_stream)
    size = working_size(info.width, info.height, cfg.working_size)
    clip_desc = f"{args.clip.name}{f' first {args.max_frames}' if args.max_frames else ''}, " \
                f"{info.width}x{info.height}, {info.frames_estimate} frames"
    meta["clip"] = {"source": str(args.clip), "frames": info.frames_estimate, "size": [info.width, info.height],
                    "codec": info.codec, "prep": args.prep, "working_size": list(size)}
    wdesc = f"model at {size[0]}x{size[1]}, batch {cfg.batch_size}"

    # Warm the model (first-call kernel selection, allocator) so round 1 is not an outlier.
    colorizer.predict(np.zeros((cfg.batch_size, size[1], size[0]), np.float32))
    latencies: list[float] = []
    executor = LocalExecutor(colorizer)
    for r in range(args.repeats):
        log.info("round %d/%d", r + 1, args.repeats)
        if "local" not in skip:
            lat: list[float] = []
            with frame_latency_probe(lat):
                dt, n = end_to_end(clip, work / "out_local.mp4", cfg, executor)
            latencies = lat
            res.add("e2e_fps", "colorize end-to-end (in-process)", "fps", n / dt, clip_desc)
            res.add("e2e_s", "colorize end-to-end wall time", "s", dt, "probe+plan+decode+model+smooth+encode+join")
            log.info("  end-to-end: %d frames in %.1f s", n, dt)
        if pre is not None:
            dt, per_batch = in_worker_thread(model_only, colorizer, pre.greys, cfg.batch_size, cfg.second_scale)
            res.add("model_fps", "floor: model only", "fps", len(pre.greys) / dt,
                    wdesc + ", pre-decoded frames, worker thread")
            full = [t for i, t in enumerate(per_batch) if (i + 1) * cfg.batch_size <= len(pre.greys)] or per_batch
            res.add("model_batch_ms", "model latency per batch", "ms", 1000 * statistics.median(full),
                    f"median over batches of {cfg.batch_size}")
            few = pre.greys[: max(cfg.batch_size, min(len(pre.greys), 128))]
            dt, _ = model_only(colorizer, few, cfg.batch_size, cfg.second_scale)
            res.add("model_main_fps", "model only, main thread", "fps", len(few) / dt,
                    f"same, called from the main thread ({len(few)} frames)")
            dt, n = transcode_only(info, cfg)
            res.add("transcode_fps", "floor: transcode only", "fps", n / dt,
                    f"decode + {cfg.encoder} crf {cfg.crf} {cfg.preset}, neutral U/V, no model")
            dt = colour_math_only(pre, cfg, colorizer)
            res.add("colour_fps", "colour math only", "fps", len(pre.greys) / dt,
                    "resize to working res + flow smoothing + chroma compose")
            log.info("  floors: model %.1f, transcode %.1f, colour math %.1f fps", res.rows["model_fps"].runs[-1],
                     res.rows["transcode_fps"].runs[-1], res.rows["colour_fps"].runs[-1])
        if "reference" not in skip:
            ref = in_worker_thread(run_reference, clip, work, cfg, colorizer)
            res.add("ref_fps", "reference: PNG frame-by-frame", "fps", ref["frames"] / ref["seconds"],
                    "extract PNG, batch-1 model, full-res Lab->RGB, PNG, encode, mux")
            res.add("ref_model_ms", "model latency, batch 1", "ms", 1000 * statistics.median(ref["model_s"]),
                    "per frame, from the reference run")
            res.details.setdefault("reference_stages_s", []).append({k: round(v, 3) for k, v in ref["stages"].items()})
            res.details["reference_png_bytes"] = ref["png_bytes"]
            log.info("  reference: %d frames in %.1f s %s", ref["frames"], ref["seconds"],
                     {k: round(v, 1) for k, v in ref["stages"].items()})
        if hd is not None:
            dt, n = end_to_end(hd, work / "out_hd.mp4", cfg, executor)
            hw = working_size(1920, 1080, cfg.working_size)
            res.add("hd_fps", "colorize end-to-end 1080p", "fps", n / dt,
                    f"generated grey 1920x1080, {n} frames, model at {hw[0]}x{hw[1]}")
            log.info("  1080p end-to-end: %d frames in %.1f s", n, dt)

    if latencies:
        res.details["frame_latency_s"] = {"median": statistics.median(latencies), "p95": _percentile(latencies, 95),
                                          "max": max(latencies), "frames": len(latencies)}
        res.derive("latency_p50_ms", "frame latency decode->encode p50", "ms", 1000 * statistics.median(latencies),
                   "last local round")
        res.derive("latency_p95_ms", "frame latency decode->encode p95", "ms", 1000 * _percentile(latencies, 95),
                   "last local round")
    if "model_batch_ms" in res.rows:
        res.derive("model_frame_ms", "model latency per frame (batched)", "ms",
                   res.med("model_batch_ms") / cfg.batch_size, "per-batch latency / batch size")
    if "e2e_fps" in res.rows and "model_fps" in res.rows:
        spf_e2e, spf_m, spf_t = 1 / res.med("e2e_fps"), 1 / res.med("model_fps"), 1 / res.med("transcode_fps")
        floor = max(spf_m, spf_t) if gpu else spf_m + spf_t
        res.derive("efficiency", "pipeline efficiency", "x", spf_e2e / floor,
                   "e2e time / " + ("max(model, transcode)" if gpu else "(model + transcode)") + "; 1 = at the floor")
        res.derive("efficiency_all", "efficiency incl. colour math", "x",
                   spf_e2e / (floor + (0 if gpu else 1 / res.med("colour_fps"))),
                   "as above, colour math added to the CPU floor" if not gpu else "GPU: same as above")
    if "e2e_fps" in res.rows and "ref_fps" in res.rows:
        res.derive("speedup_vs_ref", "speedup over PNG frame-by-frame", "x", res.med("e2e_fps") / res.med("ref_fps"),
                   "end-to-end fps / reference fps, same clip")

    if "ray" not in skip:
        ray_rows(args, cfg, clip, clip_desc, work, res)
    if "memory" not in skip:
        memory_rows(args, cfg, work, res)
    if "train" not in skip:
        res.details["train"] = train_throughput(TRAIN_RECIPE, args.train_steps, 1 if args.quick else 2,
                                                args.repeats, res)
    return res, meta


def ray_rows(args: argparse.Namespace, cfg: JobConfig, clip: Path, clip_desc: str, work: Path,
             res: Results) -> None:
    try:
        from vidcolor.distributed import RayExecutor
    except ImportError as err:
        log.warning("ray rows skipped: %s", err)
        return
    t0 = _now()
    ex = RayExecutor.start(cfg)
    start_s = _now() - t0
    try:
        # One untimed job: actors load the model and warm up, as they stay up for a batch of jobs.
        t0 = _now()
        end_to_end(clip, work / "out_ray.mp4", cfg, ex)
        first_s = _now() - t0
        for r in range(args.repeats):
            dt, n = end_to_end(clip, work / "out_ray.mp4", cfg, ex)
            res.add("ray_fps", "colorize end-to-end (Ray)", "fps", n / dt,
                    f"{len(ex.actors)} actor(s), local cluster; {clip_desc}")
            log.info("ray round %d/%d: %d frames in %.1f s", r + 1, args.repeats, n, dt)
    finally:
        ex.shutdown()
    res.add("ray_start_s", "Ray cluster + actor start", "s", start_s, "ray.init + actors (once)")
    res.add("ray_first_s", "Ray first job (cold actors)", "s", first_s, "untimed warm-up job, for reference")
    if "e2e_fps" in res.rows:
        res.derive("ray_vs_local", "Ray / in-process fps", "x", res.med("ray_fps") / res.med("e2e_fps"),
                   "same clip; one node")


def memory_rows(args: argparse.Namespace, cfg: JobConfig, work: Path, res: Results) -> None:
    peaks = []
    for secs in args.mem_seconds:
        frames = max(1, round(secs * 24))
        src = make_grey_clip(work / f"mem_{secs:g}s.mp4", 1280, 720, frames, fps=24)
        m = measure_memory(src, work / f"mem_out_{secs:g}s.mp4", cfg)
        peak_mb = m["vmhwm_kb"] / 1024
        peaks.append(peak_mb)
        res.add(f"rss_{secs:g}s", f"peak RSS, 720p {secs:g} s", "MB", peak_mb,
                f"VmHWM of a fresh process; after model load {m['rss_after_load_kb'] / 1024:.0f} MB; "
                f"{m['frames']} frames at {m['frames'] / m['seconds']:.1f} fps")
        res.details.setdefault("memory", []).append({"seconds": secs, **m})
        log.info("memory %g s 720p: peak %.0f MB", secs, peak_mb)
    if len(peaks) >= 2:
        res.derive("rss_growth", "peak RSS longest / shortest", "x", peaks[-1] / peaks[0],
                   f"{args.mem_seconds[-1]:g} s vs {args.mem_seconds[0]:g} s; ~1 = flat with length")


if __name__ == "__main__":
    sys.exit(main())

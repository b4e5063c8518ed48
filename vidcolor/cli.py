"""The `vidcolor` command: argparse -> config -> calls. Errors become one line and an exit code."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from .errors import ConfigError, Interrupted, VidcolorError

log = logging.getLogger("vidcolor")

EXIT_UNEXPECTED = 70


def _shares(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not comma-separated numbers: {text!r}") from None


def _job_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("options (override the config file; see configs/default.toml)")
    g.add_argument("--weights", help="generator checkpoint (default: the shipped model)")
    g.add_argument("--working-size", type=int, help="short side of the model input in px")
    g.add_argument("--second-scale", type=float,
                   help="also colour each frame enlarged this many times and average the two (e.g. 2; default 0 = off)")
    g.add_argument("--batch-size", type=int)
    g.add_argument("--saturation", type=float, help="gain on the predicted colour (1 = as predicted)")
    g.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"])
    g.add_argument("--device", choices=["auto", "cpu", "cuda"])
    g.add_argument("--backend", choices=["auto", "torch", "openvino"],
                   help="what runs the network: auto = OpenVINO on CPU (several times faster), torch on CUDA")
    g.add_argument("--no-smoothing", dest="smoothing", action="store_const", const=False,
                   help="switch temporal smoothing off")
    g.add_argument("--smoothing-strength", type=float)
    g.add_argument("--scene-cut-threshold", type=float)
    g.add_argument("--encoder", help="h264 | h265 | ffv1 | prores")
    g.add_argument("--crf", type=int)
    g.add_argument("--preset")
    g.add_argument("--chunk-seconds", type=float, help="target chunk length for resumable renders")
    g.add_argument("--warmup-frames", type=int)
    g.add_argument("--video-stream", type=int, help="which video stream to colorize (0 = first)")
    g.add_argument("--allow-colour-input", action="store_const", const=True,
                   help="recolour a source that already has colour, from its luma")
    g.add_argument("--deinterlace", action="store_const", const=True,
                   help="deinterlace (yadif) and write progressive video; default keeps it interlaced")


def _guide_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--guide", help="colour guide: a folder of hand-coloured keyframes (see `vidcolor keyframes`) "
                                   "or a hints .toml (time or frame, x, y, color)")
    p.add_argument("--reference", help="colour photo(s) of similar scenes, a file or a folder: each colours the "
                                       "frames whose content matches it (no match, no colour)")


JOB_KEYS = ("weights", "working_size", "second_scale", "batch_size", "saturation", "precision", "device", "backend",
            "smoothing", "smoothing_strength", "scene_cut_threshold", "encoder", "crf", "preset", "chunk_seconds",
            "warmup_frames", "video_stream", "allow_colour_input", "deinterlace", "guide",
            "reference")
# eval's --guide simulates a user, keyframes has none: the job option is colorize's alone
UNGUIDED_KEYS = tuple(k for k in JOB_KEYS if k not in ("guide", "reference"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vidcolor", description="Colorize black-and-white video.")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("colorize", help="colorize video files")
    c.add_argument("inputs", nargs="+", type=Path, help="video file(s), or folders of them with --out-dir")
    out = c.add_mutually_exclusive_group(required=True)
    out.add_argument("-o", "--output", type=Path, help="output file (one input)")
    out.add_argument("--out-dir", type=Path, help="output folder (several inputs)")
    c.add_argument("--config", type=Path, help="TOML job config")
    c.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    c.add_argument("--restart", action="store_true", help="discard an interrupted job's state and start over")
    c.add_argument("--ray-address", help="run on an existing Ray cluster ('auto' or ray://HOST:PORT)")
    c.add_argument("--workers", type=int, help="model actors (default: one per GPU, else 1; 0 = no Ray)")
    c.add_argument("--gpus-per-worker", type=float, default=None, help="GPUs each model actor requests")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _job_options(c)
    _guide_option(c)

    k = sub.add_parser("keyframes", help="write the first frame of every shot, to colour by hand for --guide")
    k.add_argument("input", type=Path)
    k.add_argument("--out-dir", type=Path, required=True)
    k.add_argument("--config", type=Path, help="TOML job config")
    _job_options(k)

    s = sub.add_parser("status", help="show the progress of an interrupted or running job")
    s.add_argument("output", type=Path)

    t = sub.add_parser("train", help="train the pix2pix generator")
    t.add_argument("--config", type=Path, required=True, help="TOML training recipe (configs/train_*.toml)")
    t.add_argument("--steps", type=int, help="override the total step count")
    t.add_argument("--out-dir", help="override the run folder")
    t.add_argument("--max-minutes", type=float, help="stop (with a checkpoint) after this long")

    e = sub.add_parser("eval", help="measure colorization quality on colour clips and photo folders")
    e.add_argument("clips", nargs="+", type=Path, help="colour clips, and folders of colour photos")
    e.add_argument("--guide", default="", help="simulate a user with the true colours, comma-separated: "
                   "first-frame (clips), points:N (N random true-colour points on the first frame / photo), "
                   "reference:last (clips: the last frame as a reference photo), reference:crop (photos: a "
                   "mirrored crop), reference:other (a frame of another clip / another photo)")
    e.add_argument("--report", type=Path, help="folder for report.json, report.md and contact sheets")
    e.add_argument("--max-frames", type=int, default=0, help="use at most this many frames per clip")
    e.add_argument("--config", type=Path, help="TOML job config")
    _job_options(e)

    x = sub.add_parser("export", help="export a training checkpoint (or a blend of several) as the generator to ship")
    x.add_argument("checkpoint", type=Path, nargs="+",
                   help="one checkpoint, or several of one architecture to average parameter by parameter")
    x.add_argument("--calibrate", type=Path, metavar="PHOTO_DIR",
                   help="measure the file's bf16 colour shift on 256 colour photos from this folder "
                   "(OpenVINO, a CPU with native bf16) and store the gain that undoes it")
    x.add_argument("--shares", type=_shares, help="comma-separated share of each checkpoint in the blend "
                   "(default equal), e.g. 0.5,0.5")
    x.add_argument("-o", "--output", type=Path, required=True)
    x.add_argument("--fp16", action="store_true",
                   help="keep convolution kernels fp16 (default int8 + per-channel scale: half the size)")
    return p


def _overrides(args: argparse.Namespace, keys: tuple[str, ...] = JOB_KEYS) -> dict[str, Any]:
    return {k: getattr(args, k, None) for k in keys}


def _cmd_colorize(args: argparse.Namespace) -> int:
    from .batch import colorize_many

    results = colorize_many(
        args.inputs, output=args.output, out_dir=args.out_dir, config=args.config,
        overrides=_overrides(args), overwrite=args.overwrite, restart=args.restart,
        progress=not args.quiet, ray_address=args.ray_address, workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
    )
    for r in results:
        print(f"{r.frames} frames in {r.seconds:.1f} s ({r.fps:.1f} fps) -> {r.output}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from .status import job_status

    print(job_status(args.output))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .config import TrainConfig, load_config
    from .train import train

    cfg = load_config(TrainConfig, args.config, {"steps": args.steps, "out_dir": args.out_dir})
    path = train(cfg, args.max_minutes)
    print(f"latest generator: {path}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .config import JobConfig, load_config
    from .evaluate import evaluate

    cfg = load_config(JobConfig, args.config, _overrides(args, UNGUIDED_KEYS))
    modes = [m.strip() for m in args.guide.split(",") if m.strip()]
    report = evaluate(args.clips, cfg, args.report, max_frames=args.max_frames, guide_modes=modes)
    print(report)
    return 0


def _cmd_keyframes(args: argparse.Namespace) -> int:
    from .config import JobConfig, load_config
    from .keyframes import write_keyframes

    cfg = load_config(JobConfig, args.config, _overrides(args, UNGUIDED_KEYS))
    paths = write_keyframes(args.input, args.out_dir, cfg)
    print(f"{len(paths)} shot(s): colour any of {args.out_dir}/t*.png, then colorize with --guide {args.out_dir}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .model import export_generator

    export_generator(args.checkpoint, args.output, int8=not args.fp16, shares=args.shares,
                    calibrate=args.calibrate)
    print(f"exported {args.output} ({args.output.stat().st_size / 2**20:.1f} MiB)")
    return 0


COMMANDS = {"colorize": _cmd_colorize, "status": _cmd_status, "train": _cmd_train, "eval": _cmd_eval,
            "keyframes": _cmd_keyframes,
            "export": _cmd_export}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="vidcolor: %(message)s" if not args.debug else "%(levelname)s %(name)s: %(message)s")
    # Third-party chatter (Ray start-up, libav warnings) is noise to a user.
    for name in ("ray", "libav", "av"):
        logging.getLogger(name).setLevel(logging.WARNING if args.debug else logging.ERROR)
    # PyAV's own log level stays None (its default): a Python log callback called from FFmpeg's
    # decoder threads deadlocks against the GIL when a threaded codec is closed.
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("vidcolor: interrupted", file=sys.stderr)
        return Interrupted.exit_code
    except VidcolorError as err:
        if args.debug:
            raise
        print(f"vidcolor: error: {err}", file=sys.stderr)
        return err.exit_code
    except MemoryError:
        if args.debug:
            raise
        print("vidcolor: error: out of memory; lower --batch-size or --working-size", file=sys.stderr)
        return EXIT_UNEXPECTED
    except OSError as err:
        if args.debug:
            raise
        print(f"vidcolor: error: {err.strerror or err}: {err.filename or ''}".rstrip(": "), file=sys.stderr)
        return 5
    except Exception as err:  # the last line of defence: one line, never a traceback
        if args.debug:
            raise
        print(f"vidcolor: internal error: {type(err).__name__}: {err} (rerun with --debug for details)",
              file=sys.stderr)
        return EXIT_UNEXPECTED


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["ConfigError", "main"]

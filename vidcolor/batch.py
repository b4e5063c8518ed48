"""One command, many files: expand inputs, name outputs, run each job (resumable one by one)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .config import JobConfig, load_config
from .errors import ConfigError
from .pipeline import JobResult, job_dir_for, run_job

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".mts", ".webm", ".wmv",
                  ".flv", ".dv", ".mxf", ".ogv", ".nut", ".3gp"}


def expand_inputs(inputs: list[Path]) -> list[Path]:
    files: list[Path] = []
    for p in inputs:
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES)
        elif p.suffix.lower() in (".txt", ".list") and p.is_file():
            files += [Path(line.strip()) for line in p.read_text().splitlines() if line.strip()]
        else:
            files.append(p)
    return files


def colorize_many(inputs: list[Path], *, output: Path | None, out_dir: Path | None, config: Path | None,
                  overrides: dict[str, Any], overwrite: bool = False, restart: bool = False,
                  progress: bool = True, ray_address: str | None = None, workers: int | None = None,
                  gpus_per_worker: float | None = None) -> list[JobResult]:
    cfg: JobConfig = load_config(JobConfig, config, overrides)
    if output is not None:
        if len(inputs) == 1 and inputs[0].is_dir():
            raise ConfigError(f"{inputs[0]} is a folder; use --out-dir to colorize the videos in it")
        if len(inputs) != 1:
            raise ConfigError("-o takes one input file; use --out-dir for several")
        jobs = [(inputs[0], output)]
    else:
        assert out_dir is not None
        files = expand_inputs(inputs)
        if not files:
            raise ConfigError("no video files found in the given inputs")
        out_dir.mkdir(parents=True, exist_ok=True)
        suffix = None
        jobs = []
        for f in files:
            suffix = f.suffix if f.suffix.lower() in (".mp4", ".mov", ".mkv") else ".mkv"
            if cfg.encoder == "ffv1":
                suffix = ".mkv"
            elif cfg.encoder == "prores":
                suffix = ".mov"
            jobs.append((f, out_dir / f"{f.stem}_color{suffix}"))
        names = [o for _, o in jobs]
        if len(set(names)) != len(names):
            raise ConfigError("two inputs would write the same output name; give them distinct names")
    executor = None
    if workers != 0:
        from .distributed import RayExecutor

        try:
            executor = RayExecutor.start(cfg, ray_address=ray_address, workers=workers,
                                         gpus_per_worker=gpus_per_worker)
        except ConfigError as err:
            if ray_address or workers:
                raise
            # One machine, no cluster asked for: a Ray that cannot start is no reason to fail.
            log.warning("%s; running in this process instead", err)
    results = []
    try:
        for src, out in jobs:
            if out_dir is not None and out.exists() and not overwrite and not job_dir_for(out).exists():
                # A batch is resumable as a whole: finished files are skipped, not refused.
                log.info("%s: already done (%s exists; --overwrite redoes it)", src, out)
                continue
            if len(jobs) > 1:
                log.info("%s -> %s", src, out)
            results.append(run_job(src, out, cfg, overwrite=overwrite, restart=restart, progress=progress,
                                   executor=executor))
    finally:
        if executor is not None:
            executor.shutdown()
    return results

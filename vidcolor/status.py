"""`vidcolor status OUTPUT`: a job's progress, read from its manifest (never written)."""

from __future__ import annotations

import time
from pathlib import Path

from .errors import BadInputError
from .pipeline import job_dir_for
from .plan import load_manifest


def job_status(output: Path) -> str:
    mpath = job_dir_for(output) / "manifest.json"
    if not mpath.exists():
        if output.exists():
            return f"{output}: complete (no job state left)"
        raise BadInputError(f"no job found for {output} (no {mpath})")
    m = load_manifest(mpath)
    total, done = len(m.chunks), len(m.done)
    pct = 100.0 * m.frames_done / m.frames_total if m.frames_total else 0.0
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(m.started))
    return (f"{output}: {done}/{total} chunks done, {m.frames_done}/{m.frames_total} frames ({pct:.1f}%), "
            f"{m.elapsed_s:.1f} s of work so far, started {started}")

"""Chunk planning and the job manifest: what to do, what is done, and whether it still fits.

One writer: only the driver calls `save_manifest`/`write_atomic`. Everything is written to
`name.part`, fsynced and renamed, so a crash leaves the old file or the new one, never half.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .config import JobConfig
from .errors import OutputError, ResumeError

MANIFEST_VERSION = 1
# Options that do not change the output; everything else guards resume. (batch_size can move
# a chroma value by one code step, so it is not neutral; see Colorizer.predict.)
# weights, guide and reference photos: guarded by their content hash instead of the path
NEUTRAL_OPTIONS = {"device", "weights", "guide", "reference"}


@dataclass(frozen=True)
class Chunk:
    index: int
    start_pts: int  # first output frame (a keyframe, except for chunk 0)
    end_pts: int | None  # first frame of the next chunk; None = to the end
    warmup_pts: int  # decoding + smoothing starts here; frames before start_pts are not emitted
    frames: int  # output frames in [start_pts, end_pts)


def plan_chunks(frame_pts: list[int], keyframes: list[int], time_base: float, chunk_seconds: float,
                warmup_frames: int) -> list[Chunk]:
    """Cut at keyframes roughly every `chunk_seconds`; each chunk warms up on the frames before it."""
    if not frame_pts:
        return []
    starts = [frame_pts[0]]
    target = chunk_seconds / time_base
    key_set = sorted(k for k in keyframes if k > frame_pts[0])
    for k in key_set:
        if k - starts[-1] >= target:
            starts.append(k)
    chunks = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else None
        lo = bisect.bisect_left(frame_pts, start)
        hi = bisect.bisect_left(frame_pts, end) if end is not None else len(frame_pts)
        warm = frame_pts[max(0, lo - warmup_frames)]
        chunks.append(Chunk(i, start, end, warm, hi - lo))
    return [c for c in chunks if c.frames > 0]


def file_fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """Size, mtime and a hash of the head and tail: cheap, and catches any realistic change."""
    p = Path(path)
    st = p.stat()
    h = hashlib.sha256()
    with open(p, "rb") as f:
        h.update(f.read(1 << 20))
        if st.st_size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read(1 << 20))
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256_head_tail": h.hexdigest()}


def config_fingerprint(cfg: JobConfig) -> str:
    d = {k: v for k, v in asdict(cfg).items() if k not in NEUTRAL_OPTIONS}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".part")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {err.strerror or err}") from err
    _fsync_dir(path.parent)


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@dataclass
class Manifest:
    """The job's plan and progress, stored as JSON beside the segments."""

    path: Path
    fingerprint: dict[str, Any]
    chunks: list[Chunk]
    done: dict[int, dict[str, Any]]
    started: float
    elapsed_s: float = 0.0
    segment_suffix: str = ".mkv"

    def to_json(self) -> bytes:
        return json.dumps({
            "version": MANIFEST_VERSION,
            "fingerprint": self.fingerprint,
            "chunks": [asdict(c) for c in self.chunks],
            "done": {str(k): v for k, v in sorted(self.done.items())},
            "started": self.started,
            "elapsed_s": self.elapsed_s,
            "segment_suffix": self.segment_suffix,
        }, indent=1).encode()

    def save(self) -> None:
        write_atomic(self.path, self.to_json())

    @property
    def frames_total(self) -> int:
        return sum(c.frames for c in self.chunks)

    @property
    def frames_done(self) -> int:
        return sum(int(d["frames"]) for d in self.done.values())


def load_manifest(path: Path) -> Manifest:
    """Parse a manifest; any damage is a ResumeError that names the file."""
    try:
        raw = json.loads(path.read_bytes())
        if raw.get("version") != MANIFEST_VERSION:
            raise ValueError(f"version {raw.get('version')!r}")
        chunks = [Chunk(**{k: c[k] for k in ("index", "start_pts", "end_pts", "warmup_pts", "frames")})
                  for c in raw["chunks"]]
        for c in chunks:
            if not all(_is_int(getattr(c, k)) for k in ("index", "start_pts", "warmup_pts", "frames")) or not (
                    c.end_pts is None or _is_int(c.end_pts)):
                raise ValueError("bad chunk field")
        done = {int(k): dict(v) for k, v in raw["done"].items()}
        for v in done.values():
            # The resume path reads these as they are: a wrong type would surface later as a crash.
            if not ({"frames", "bytes", "sha256", "file"} <= v.keys() and _is_int(v["frames"]) and _is_int(v["bytes"])
                    and isinstance(v["sha256"], str) and isinstance(v["file"], str)):
                raise ValueError("bad done entry")
        suffix = str(raw.get("segment_suffix", ".mkv"))
        if "/" in suffix or len(suffix) > 8:
            raise ValueError("bad segment suffix")
        for v in done.values():
            if "/" in str(v["file"]) or str(v["file"]).startswith("."):
                raise ValueError("bad segment file name")
        return Manifest(path, dict(raw["fingerprint"]), chunks, done, float(raw["started"]),
                        float(raw.get("elapsed_s", 0.0)), suffix)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError) as err:
        raise ResumeError(f"job state {path} is damaged ({err}); rerun with --restart to start over") from err


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def compare_fingerprints(saved: dict[str, Any], current: dict[str, Any]) -> None:
    for key, what in (("input", "the input file"), ("config", "the options/config"), ("weights", "the model weights"),
                      ("output_format", "the output format"), ("guide", "the colour guide or reference photos")):
        if saved.get(key) != current.get(key):
            raise ResumeError(
                f"{what} changed since this job started; rerun with --restart to start over "
                f"(or restore the original {key})")

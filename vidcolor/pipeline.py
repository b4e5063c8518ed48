"""The colorize job, top to bottom.

    probe -> plan chunks (manifest) -> for each chunk not done:
        decode Y -> small grey -> generator -> ab -> temporal smoothing -> U, V -> encode segment
    -> join segments + copy audio/subtitles -> atomic rename to the output name

`process_chunk` is a pure function of (source, chunk, config, model): it runs in-process or in a
Ray task, and only the driver (`run_job`) writes files.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np

from . import plan as planmod
from .color import ab_to_planes, apply_saturation, small_grey, working_size
from .config import JobConfig, load_config
from .errors import BadInputError, Interrupted, OutputError, VidcolorError, WeightsError
from .guide import (
    Guide,
    ReferencePhoto,
    ShotGuide,
    active_guide,
    build_shot_guides,
    chunk_guides,
    follow_keyframe,
    frame_guide,
    guides_hash,
    near_keyframes,
    read_guide,
    read_references,
)
from .match import MATCH_SCALE, Reference, carry, reference_of
from .model import Colorizer
from .plan import Chunk, Manifest
from .temporal import TemporalSmoother, new_flow
from .video import (
    ChunkSource,
    DecodeStats,
    SegmentEncoder,
    SourceInfo,
    check_streams_fit,
    container_format,
    decode_chunk,
    frame_pts,
    join,
    output_pix_fmt,
    probe,
    read_chunk,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

COLOUR_INPUT_LIMIT = 3.0  # mean |chroma - neutral| in 8-bit code values above which a source is colour


@dataclass
class JobResult:
    output: Path
    frames: int
    seconds: float
    chunks_total: int
    chunks_run: int
    decode_errors: int

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


# --- one chunk ----------------------------------------------------------------------------


def prefetch(items: Iterable[T], depth: int) -> Iterator[T]:
    """Run `items` in a background thread, `depth` ahead. PyAV, OpenCV and torch release the
    GIL, so decode, model and encode overlap. Exceptions surface in the consumer."""
    q: queue.Queue[tuple[str, Any]] = queue.Queue(depth)
    stop = threading.Event()

    def run() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(("item", item), timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("end", None))
        except BaseException as err:
            q.put(("error", err))

    t = threading.Thread(target=run, daemon=True)
    try:
        t.start()
        while True:
            kind, value = q.get()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        stop.set()
        # Wait for it: a thread still in torch when Python exits (Ctrl-C) aborts the process.
        with contextlib.suppress(RuntimeError):  # interrupted before the thread started
            t.join(timeout=10)


def colorize_frames(
    frames: Iterable[tuple[int, np.ndarray]],
    info: SourceInfo,
    cfg: JobConfig,
    colorizer: Colorizer,
    emit_from_pts: int,
    chroma_size: tuple[int, int],
    chroma_bits: int,
    guides: Sequence[Guide] = (),
) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """(pts, Y) -> (pts, Y, U, V). Frames before `emit_from_pts` only warm up the smoother.
    Frames in a guided shot get their shot's colour guide as model input."""
    size = working_size(info.width, info.height, cfg.working_size)
    k = (info.rotation // 90) % 4  # the model sees the picture upright
    smoother = TemporalSmoother(cfg.smoothing_strength, cfg.scene_cut_threshold) if cfg.smoothing else None
    dis = new_flow() if guides else None
    keys: dict[tuple[int, int], Reference] = {}  # each keyframe's features per scale, once per chunk
    photos = [g for g in guides if isinstance(g, ReferencePhoto)]
    keyed = any(isinstance(g, ShotGuide) for g in guides)
    if photos and not colorizer.can_match:
        raise WeightsError("reference photos need a model with an ImageNet encoder (effnet_unet) to match them")
    # All reference photos as one set of positions to match against, built once per chunk.
    refs = Reference.join([reference_of(colorizer, p.grey, p.guide) for p in photos]) if photos else None
    joined: dict[tuple[int, ...], Reference | None] = {}

    def key_reference(g: ShotGuide, scale: int = 1) -> Reference:
        if (g.pts, scale) not in keys:
            keys[g.pts, scale] = reference_of(colorizer, g.grey, g.guide, scale)
        return keys[g.pts, scale]

    def other_shots_reference(pts: int) -> Reference | None:
        """What a frame no keyframe covers is matched to: the keyframes nearest in time (the
        scene's other shots) and the reference photos."""
        near = near_keyframes(guides, pts)
        key = tuple(g.pts for g in near)
        if key not in joined:
            parts = [key_reference(g) for g in near] + ([refs] if refs is not None else [])
            joined[key] = Reference.join(parts) if parts else None
        return joined[key]

    def guide_batch(pts_list: list[int], grey: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(the network's guide, the keyframe colours the flow carried) for a batch; None: none."""
        found = [(i, active_guide(guides, p)) for i, p in enumerate(pts_list)]
        if not any(g is not None for _, g in found) and (not colorizer.can_match or (refs is None and not keyed)):
            return None, None
        # Its own shot's keyframe is matched at MATCH_SCALE, reference photos and other shots'
        # keyframes at 1x (see match.MATCH_SCALE): each set of features only where needed (a
        # keyframe of a few points has no colour to match: make_reference's cell cover).
        own_refs = {i: key_reference(g, MATCH_SCALE) for i, g in found if g is not None and colorizer.can_match}
        own_refs = {i: r for i, r in own_refs.items() if r.guide[:, 2].any()}
        own, own_pad = colorizer.features(grey, cfg.batch_size, MATCH_SCALE) if own_refs else (None, (0, 0))
        strict = colorizer.can_match and (refs is not None or (keyed and not all(g is not None for _, g in found)))
        feats, pad = colorizer.features(grey, pad_to=cfg.batch_size) if strict else (None, (0, 0))
        out = np.zeros((*grey.shape, 3), np.float32)
        carried = np.zeros_like(out)
        h, w = grey.shape[1:]
        for i, g in found:
            if g is not None:
                matched = None if own is None or i not in own_refs else carry(own[i], own_pad, own_refs[i], (w, h))
                out[i], carried[i] = frame_guide(g, grey[i], pts_list[i],
                                                 (pts_list[i] - g.pts) * float(info.time_base), dis, matched)
                other = refs
            else:
                other = other_shots_reference(pts_list[i])
            if other is not None and feats is not None:
                # Reference photos (and, off their own shots, keyframes) colour what the keyframe
                # guide leaves open, gated strictly: they show another moment, often another place.
                out[i] += (1.0 - out[i][..., 2:3]) * carry(feats[i], pad, other, (w, h), strict=True)
        if not out[..., 2].any():
            return None, None  # nothing matched: the plain forward
        return out, (carried if carried[..., 2].any() else None)

    def flush(batch: list[tuple[int, np.ndarray, np.ndarray]]) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:  # noqa: E501
        grey = np.stack([np.rot90(g, k) for _, _, g in batch]) if k else np.stack([g for _, _, g in batch])
        guide, carried = guide_batch([p for p, _, _ in batch], grey) if guides else (None, None)
        abs_ = colorizer.predict(grey, pad_to=cfg.batch_size, guide=guide, second_scale=cfg.second_scale)
        for j, ((pts, y, g), ab) in enumerate(zip(batch, abs_)):
            if carried is not None:
                ab = follow_keyframe(ab, carried[j])
            if k:
                ab = np.rot90(ab, -k)
            ab = np.ascontiguousarray(ab)
            if smoother is not None:
                ab = smoother(g, ab)
            if pts < emit_from_pts:
                continue
            if cfg.saturation != 1.0:
                conf = None if guide is None else np.rot90(guide[j, ..., 2], -k)
                ab = apply_saturation(ab, cfg.saturation, conf)
            u, v = ab_to_planes(g, ab, chroma_size, chroma_bits, info.full_range, info.matrix)
            yield pts, y, u, v

    batch: list[tuple[int, np.ndarray, np.ndarray]] = []
    for pts, y in frames:
        if y.shape != (info.height, info.width):
            raise BadInputError(
                f"frame size changes mid-stream ({info.width}x{info.height} -> {y.shape[1]}x{y.shape[0]}); "
                "not supported")
        batch.append((pts, y, small_grey(y, size, info)))
        if len(batch) >= cfg.batch_size:
            yield from flush(batch)
            batch = []
    if batch:
        yield from flush(batch)


def process_chunk(
    info: SourceInfo,
    chunk: Chunk,
    source: ChunkSource,
    cfg: JobConfig,
    colorizer: Colorizer,
    fmt: str,
    on_frame: Callable[[int], None] | None = None,
    guides: Sequence[Guide] = (),
) -> tuple[bytes, int, int]:
    """Colorize one chunk from its compressed packets into an encoded segment.
    Returns (segment bytes, frames written, decode errors)."""
    # OpenCV's own threads cost twice the CPU on the small working-size frames (DIS flow: 1.7 ms
    # against 0.7 per frame, measured) and gain nothing here: the stages already run in parallel.
    cv2.setNumThreads(1)
    stats = DecodeStats()
    buf = io.BytesIO()
    enc = SegmentEncoder(buf, fmt, info, cfg)
    decoded = prefetch(decode_chunk(source, info, chunk.warmup_pts, chunk.end_pts, stats, cfg.deinterlace),
                       2 * cfg.batch_size)
    composed = prefetch(
        colorize_frames(decoded, info, cfg, colorizer, chunk.start_pts, enc.chroma_size, enc.bits, guides),
        cfg.batch_size,
    )
    try:
        for pts, y, u, v in composed:
            enc.write(pts, y, u, v)
            if on_frame:
                on_frame(1)
    finally:  # stop the stage threads now, also on Ctrl-C
        composed.close()
        with contextlib.suppress(ValueError):  # still in use by a thread that did not stop
            decoded.close()
    enc.close()
    return buf.getvalue(), enc.frames, stats.errors


class LocalExecutor:
    """Runs chunks one after another in this process (threads overlap the stages)."""

    def __init__(self, colorizer: Colorizer) -> None:
        self.colorizer = colorizer
        self.weights_sha256 = colorizer.meta.get("sha256", "in-memory")
        self.takes_guide = colorizer.takes_guide

    def run(self, info: SourceInfo, chunks: list[Chunk], cfg: JobConfig, fmt: str,
            on_frames: Callable[[int], None] | None, guides: Sequence[Guide] = ()
            ) -> Iterator[tuple[Chunk, bytes, int, int]]:
        for chunk in chunks:
            source = read_chunk(info, chunk.warmup_pts, chunk.end_pts, from_start=chunk.index == 0)
            data, frames, errors = process_chunk(info, chunk, source, cfg, self.colorizer, fmt, on_frames,
                                                 chunk_guides(guides, chunk))
            yield chunk, data, frames, errors

    def shutdown(self) -> None:
        pass


# --- the job -------------------------------------------------------------------------------


def segment_format(encoder: str) -> str:
    """Segments keep every pts exact: MOV with a matching movie timescale does, for every codec it
    holds. FFV1 (intra-only, so no reordering delay to shift) goes in Matroska."""
    return "matroska" if encoder == "ffv1" else "mov"


def job_dir_for(output: Path) -> Path:
    return output.with_name(f".{output.name}.vidcolor")


def check_paths(src: Path, out: Path, overwrite: bool) -> None:
    """Never harm the user's files: refuse the input as output (any spelling), and existing
    files unless --overwrite."""
    if not src.exists():
        raise BadInputError(f"input not found: {src}")
    try:
        same = out.exists() and os.path.samefile(src, out)
    except OSError:
        same = False
    if same or src.resolve() == out.resolve():
        raise OutputError(f"output {out} is the input file; choose another output name")
    if out.is_dir():
        raise OutputError(f"output {out} is a directory; give a file name")
    if out.exists() and not overwrite:
        raise OutputError(f"output {out} exists; pass --overwrite to replace it")
    parent = out.resolve().parent
    if not parent.is_dir():
        raise OutputError(f"output directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output directory {parent} is not writable")


def colorize(
    input: str | os.PathLike,
    output: str | os.PathLike,
    *,
    config: str | os.PathLike | None = None,
    overwrite: bool = False,
    restart: bool = False,
    progress: bool = False,
    **options: Any,
) -> JobResult:
    """Colorize one video file. `options` override config keys (see configs/default.toml)."""
    cfg = load_config(JobConfig, config, options)
    return run_job(Path(input), Path(output), cfg, overwrite=overwrite, restart=restart, progress=progress)


def run_job(src: Path, out: Path, cfg: JobConfig, *, overwrite: bool = False, restart: bool = False,
            progress: bool = False, colorizer: Colorizer | None = None, executor: Any = None,
            guides: Sequence[Guide] | None = None) -> JobResult:
    """Colorize `src` into `out`, resuming a matching interrupted job. `executor` runs the chunks
    (LocalExecutor by default, or distributed.RayExecutor). `guides`: colour guides already
    built (eval's simulated user); by default they come from `cfg.guide`, if set."""
    t0 = time.time()
    check_paths(src, out, overwrite)
    fmt = container_format(out)
    info = probe(src, cfg.video_stream)
    if info.colour_in_source > COLOUR_INPUT_LIMIT:
        if not cfg.allow_colour_input:
            raise BadInputError(
                f"{src} is already in colour (mean chroma {info.colour_in_source:.1f}); "
                "pass --allow-colour-input to recolour it from its luma")
        log.warning("%s is already in colour: colorizing from its luma only", src)
    check_streams_fit(info, fmt)
    output_pix_fmt(info, cfg.encoder)  # an encoder that cannot take this source fails before any work
    if executor is None:
        executor = LocalExecutor(colorizer or Colorizer.for_job(cfg))
    if guides is None:
        guides = load_guides(Path(cfg.guide), info, cfg) if cfg.guide else []
        if cfg.reference:
            guides += read_references(Path(cfg.reference), cfg.working_size)
    guides = list(guides)
    if guides and not executor.takes_guide:
        raise WeightsError(f"the model {cfg.weights_path.name} takes no colour guide; use a guided model for "
                           "--guide and --reference")
    manifest = open_manifest(src, out, info, cfg, fmt, executor.weights_sha256, restart,
                             guides_hash(guides) if guides else None)

    todo = [c for c in manifest.chunks if c.index not in manifest.done]
    bar = _progress_bar(manifest, progress)
    decode_errors = 0
    run_start = time.time()
    try:
        for chunk, data, frames, errors in executor.run(info, todo, cfg, segment_format(cfg.encoder),
                                                        bar.update if bar else None, guides):
            decode_errors += errors
            record_segment(manifest, chunk, data, frames)
            manifest.elapsed_s += time.time() - run_start
            run_start = time.time()
            manifest.save()
    except KeyboardInterrupt as err:
        manifest.elapsed_s += time.time() - run_start
        manifest.save()
        raise Interrupted(
            f"interrupted: {len(manifest.done)}/{len(manifest.chunks)} chunks kept in {manifest.path.parent}; "
            "run the same command again to resume") from err
    finally:
        if bar:
            bar.close()
        if len(manifest.done) < len(manifest.chunks):
            if not manifest.done:  # nothing worth keeping: leave no job folder behind
                shutil.rmtree(manifest.path.parent, ignore_errors=True)
            _unlock_job(manifest.path.parent)
    finish(manifest, info, out, fmt)
    if decode_errors:
        log.warning("%d damaged packets/frames in %s were skipped or concealed by the decoder", decode_errors, src)
    return JobResult(out, manifest.frames_total, time.time() - t0, len(manifest.chunks), len(todo), decode_errors)


def load_guides(path: Path, info: SourceInfo, cfg: JobConfig) -> list[ShotGuide]:
    """A guide folder or hints file -> the shots it colours (checked before any work)."""
    size = working_size(info.width, info.height, cfg.working_size)
    pts_list = frame_pts(info)  # one demux for checking the guide and finding its shots
    keyed = read_guide(path, info, pts_list, size)
    guides = build_shot_guides(info, pts_list, keyed, size, cfg.scene_cut_threshold, cfg.deinterlace)
    log.info("guide %s: %d shot(s) guided", path, len(guides))
    return guides


def _progress_bar(manifest: Manifest, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=manifest.frames_total, initial=manifest.frames_done, unit="frame", desc="colorize",
                dynamic_ncols=True, smoothing=0.1)


def open_manifest(src: Path, out: Path, info: SourceInfo, cfg: JobConfig, fmt: str, weights_sha256: str,
                  restart: bool, guide_sha256: str | None = None) -> Manifest:
    """Resume a matching job, refuse a mismatched one, or plan a new one."""
    jdir = job_dir_for(out)
    mpath = jdir / "manifest.json"
    fingerprint = {
        "input": planmod.file_fingerprint(src),
        "config": planmod.config_fingerprint(cfg),
        "weights": weights_sha256,
        "output_format": fmt,
    }
    if guide_sha256:
        fingerprint["guide"] = guide_sha256
    if restart and jdir.exists():
        _lock_job(jdir)  # refuses while another run owns it
        shutil.rmtree(jdir)
    if mpath.exists():
        _lock_job(jdir)
        manifest = planmod.load_manifest(mpath)
        planmod.compare_fingerprints(manifest.fingerprint, fingerprint)
        verify_done(manifest)
        log.info("resuming: %d/%d chunks already done", len(manifest.done), len(manifest.chunks))
        return manifest
    try:
        jdir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create job folder {jdir}: {err.strerror or err}") from err
    _lock_job(jdir)
    from .video import keyframe_pts

    pts = frame_pts(info)
    if not pts:
        raise BadInputError(f"no video frames in {src}")
    chunks = planmod.plan_chunks(pts, keyframe_pts(info), float(info.time_base), cfg.chunk_seconds,
                                 # yadif needs the frame before a chunk's first one
                                 max(cfg.warmup_frames, 1 if cfg.deinterlace else 0))
    suffix = ".mkv" if segment_format(cfg.encoder) == "matroska" else ".mov"
    manifest = Manifest(mpath, fingerprint, chunks, {}, time.time(), segment_suffix=suffix)
    manifest.save()
    return manifest


_LOCKS: dict[Path, int] = {}


def _lock_job(jdir: Path) -> None:
    """One run per output: a second `vidcolor` on the same output would mix two jobs' files."""
    import fcntl

    if jdir in _LOCKS:
        return
    try:
        fd = os.open(jdir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise OutputError(f"cannot lock job folder {jdir}: {err.strerror or err}") from err
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        raise OutputError(f"another vidcolor run is working on this output ({jdir}); wait for it or stop it") from err
    _LOCKS[jdir] = fd


def _unlock_job(jdir: Path) -> None:
    fd = _LOCKS.pop(jdir, None)
    if fd is not None:
        os.close(fd)


def verify_done(manifest: Manifest) -> None:
    """Re-check every finished segment (size and hash); anything that does not match is redone."""
    for idx, entry in list(manifest.done.items()):
        seg = manifest.path.parent / entry["file"]
        ok = seg.is_file() and seg.stat().st_size == entry["bytes"] and planmod.sha256_file(seg) == entry["sha256"]
        if not ok:
            log.warning("segment %s is missing or damaged: redoing chunk %d", seg.name, idx)
            del manifest.done[idx]


def record_segment(manifest: Manifest, chunk: Chunk, data: bytes, frames: int) -> None:
    """The driver alone writes segments: atomically, then the manifest records size and hash."""
    if frames != chunk.frames:
        log.warning("chunk %d: %d frames decoded, %d planned", chunk.index, frames, chunk.frames)
    seg = manifest.path.parent / f"seg_{chunk.index:05d}{manifest.segment_suffix}"
    planmod.write_atomic(seg, data)
    manifest.done[chunk.index] = {"frames": frames, "bytes": len(data), "sha256": planmod.sha256_bytes(data),
                                  "file": seg.name}


def finish(manifest: Manifest, info: SourceInfo, out: Path, fmt: str) -> None:
    """Join the segments under a temporary name, rename into place, remove the job folder."""
    segs = [manifest.path.parent / manifest.done[c.index]["file"] for c in manifest.chunks]
    tmp = out.with_name(f".{out.name}.part")
    try:
        join(segs, info, tmp, fmt)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {out}: {err.strerror or err}; the finished chunks are kept in "
                          f"{manifest.path.parent}, rerun to resume") from err
    except (VidcolorError, KeyboardInterrupt):
        tmp.unlink(missing_ok=True)
        raise
    except Exception as err:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot join the output {out}: {err}") from err
    shutil.rmtree(manifest.path.parent, ignore_errors=True)
    _unlock_job(manifest.path.parent)

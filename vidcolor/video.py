"""Everything that touches PyAV: probe, decode the luma of a range, encode segments, join.

Facts this module relies on (../shared/DESIGN.md): the Y plane is read directly (faster than
`to_ndarray("gray")`, which also re-ranges it); the final empty packet is fed to the decoder so
the last frames are not lost; pts and the stream time_base are copied so VFR timing survives;
audio/subtitle packets are copied with `add_stream_from_template`.
"""

from __future__ import annotations

import heapq
import io
import logging
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import av
import av.error
import numpy as np

from .config import ENCODERS, JobConfig
from .errors import BadInputError, ConfigError

log = logging.getLogger(__name__)

# Planar YUV chroma layouts whose Y plane we read directly.
PLANAR_YUV = ("420", "422", "444")
GREY_FORMATS = {"gray": 8, "gray10le": 10, "gray12le": 12, "gray16le": 16}
COLORSPACE_BT709 = 1  # AVColorSpace values
COLORSPACE_SMPTE170M = 6
RANGE_JPEG = 2
# AVFieldOrder: 0 unknown, 1 progressive, then interlaced: 2 TT, 3 BB, 4 TB, 5 BT (coded, displayed).
FIELD_PROGRESSIVE = 1
FIELD_NAMES = {2: "top field first", 3: "bottom field first", 4: "top coded, bottom shown first",
               5: "bottom coded, top shown first"}

CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi", ".nut": "nut"}


@dataclass(frozen=True)
class SourceInfo:
    """What the pipeline needs to know about the input video stream."""

    path: str
    stream_index: int  # absolute index of the chosen video stream
    width: int
    height: int
    pix_fmt: str  # as decoded
    bits: int  # luma bit depth of the working frames (8 or 10..16)
    subsampling: str  # "420" | "422" | "444": chroma layout the output keeps
    grey_format: bool  # decoded frames have no chroma planes
    full_range: bool
    matrix: str  # "bt601" | "bt709", for composing chroma
    color_range: int
    colorspace: int
    color_primaries: int
    color_trc: int
    time_base: Fraction
    rate: Fraction | None
    start_pts: int
    duration_s: float
    frames_estimate: int
    rotation: int  # degrees counter-clockwise, as the display matrix says
    sar: Fraction | None
    codec: str
    interlaced: bool
    colour_in_source: float  # mean |chroma - neutral| of the first frames, in code values
    other_streams: tuple[tuple[int, str, str], ...] = field(default_factory=tuple)  # (index, type, codec)
    field_order: int = 0  # AVFieldOrder of the stream (FIELD_NAMES); 0 unknown, 1 progressive


def open_input(path: str | os.PathLike) -> av.container.InputContainer:
    p = Path(path)
    if not p.exists():
        raise BadInputError(f"input not found: {p}")
    if p.is_dir():
        raise BadInputError(f"input is a directory, not a video: {p}")
    if p.stat().st_size == 0:
        raise BadInputError(f"input is an empty file: {p}")
    try:
        return av.open(str(p), metadata_errors="ignore")
    except av.error.FFmpegError as err:
        raise BadInputError(f"not a readable video file: {p} ({err.strerror or err})") from err
    except OSError as err:
        raise BadInputError(f"cannot open {p}: {err.strerror or err}") from err


def working_layout(pix_fmt: str) -> tuple[int, str, bool] | None:
    """(bits, subsampling, grey) when frames of this format can be read as they are."""
    if pix_fmt in GREY_FORMATS:
        return GREY_FORMATS[pix_fmt], "420", True
    fmt = av.VideoFormat(pix_fmt)
    comps = fmt.components
    if (
        fmt.name.startswith(("yuv", "yuvj"))
        and not fmt.name.startswith("yuva")
        and len(comps) == 3
        and [c.plane for c in comps] == [0, 1, 2]
        and (fmt.is_big_endian is False or comps[0].bits == 8)
    ):
        for name in PLANAR_YUV:
            if f"yuv{name}p" in fmt.name or f"yuvj{name}p" in fmt.name:
                bits = comps[0].bits
                if bits in (8, 10, 12, 16):
                    return bits, name, False
    return None


def probe(path: str | os.PathLike, video_stream: int = 0) -> SourceInfo:
    """Read the container header and the first frames; BadInputError when it is no usable video."""
    with open_input(path) as c:
        # FFmpeg reads a single PNG/JPEG as a one-frame "video"; colorizing stills is not this tool.
        demuxer = c.format.name if c.format else ""
        if demuxer == "image2" or demuxer.endswith("_pipe"):
            raise BadInputError(f"{path} is a still image ({demuxer.removesuffix('_pipe')}), not a video")
        videos = [s for s in c.streams.video if s.codec_context is not None]
        # Attached pictures (cover art) are video streams with one frame: never the film.
        videos = [s for s in videos if not (s.disposition & av.stream.Disposition.attached_pic)]
        if not videos:
            raise BadInputError(f"no video stream in {path}")
        if video_stream >= len(videos):
            raise BadInputError(
                f"{path} has {len(videos)} video stream(s); --video-stream {video_stream} does not exist")
        vs = videos[video_stream]
        cc = vs.codec_context
        others = tuple(
            (s.index, s.type, s.codec_context.name if s.codec_context else "?")
            for s in c.streams
            if s.index != vs.index and s.type in ("audio", "subtitle", "data", "attachment", "video")
        )
        first = None
        chroma_dev: list[float] = []
        vs.thread_type = "AUTO"
        try:
            for frame in decode_frames(c, vs, errors=[0]):
                if first is None:
                    first = frame
                chroma_dev.append(_chroma_deviation(frame))
                if len(chroma_dev) >= 5:
                    break
        except av.error.FFmpegError as err:
            raise BadInputError(f"cannot decode video in {path}: {err}") from err
        if first is None:
            raise BadInputError(f"no decodable video frames in {path}")
        layout = working_layout(first.format.name)
        pix_fmt = first.format.name
        if layout is None:
            layout = (8, "420", False)  # converted to yuv420p on decode
        bits, sub, grey = layout
        full = first.color_range == RANGE_JPEG or pix_fmt.startswith("yuvj") or (grey and first.color_range != 1)
        tb = vs.time_base or Fraction(1, 90000)
        rate = vs.average_rate or vs.guessed_rate
        duration = float(vs.duration * tb) if vs.duration else float(c.duration or 0) / av.time_base
        frames = vs.frames or (round(duration * float(rate)) if rate else 0)
        rotation = round(first.rotation or 0) % 360 if hasattr(first, "rotation") else 0
        # Untagged video is composed as BT.601, and the output says so (SegmentEncoder tags it):
        # decoders disagree on what "unspecified" means, a tag leaves no doubt.
        matrix = "bt709" if first.colorspace == COLORSPACE_BT709 else "bt601"
        return SourceInfo(
            path=str(path),
            stream_index=vs.index,
            width=first.width,
            height=first.height,
            pix_fmt=pix_fmt,
            bits=bits,
            subsampling=sub,
            grey_format=grey,
            full_range=bool(full),
            matrix=matrix,
            color_range=int(first.color_range or 0),
            colorspace=int(cc.colorspace or 0),
            color_primaries=int(cc.color_primaries or 0),
            color_trc=int(cc.color_trc or 0),
            time_base=tb,
            rate=Fraction(rate) if rate else None,
            start_pts=int(vs.start_time if vs.start_time is not None else (first.pts or 0)),
            duration_s=duration,
            frames_estimate=int(frames),
            rotation=rotation,
            sar=Fraction(vs.sample_aspect_ratio) if vs.sample_aspect_ratio else None,
            codec=cc.name,
            interlaced=bool(getattr(first, "interlaced_frame", False)),
            colour_in_source=float(np.mean(chroma_dev)) if chroma_dev else 0.0,
            other_streams=others,
            field_order=int(cc.field_order or 0),
        )


def _chroma_deviation(frame: av.VideoFrame) -> float:
    """Mean distance of the chroma planes from neutral, in 8-bit code values (0 for grey film)."""
    layout = working_layout(frame.format.name)
    if layout is None:
        frame = frame.reformat(format="yuv420p")
        layout = (8, "420", False)
    bits, _, grey = layout
    if grey:
        return 0.0
    mid = 1 << (bits - 1)
    dev = [np.abs(read_plane(frame, i).astype(np.float32) - mid).mean() for i in (1, 2)]
    return float(np.mean(dev)) / (1 << (bits - 8))


def read_plane(frame: av.VideoFrame, index: int) -> np.ndarray:
    """A copy of one plane as uint8/uint16 (h, w), without the line padding."""
    plane = frame.planes[index]
    dtype = np.uint8 if frame.format.components[0].bits <= 8 else np.uint16
    item = np.dtype(dtype).itemsize
    arr = np.frombuffer(plane, dtype).reshape(plane.height, plane.line_size // item)
    return arr[:, : plane.width].copy()


def write_plane(frame: av.VideoFrame, index: int, data: np.ndarray) -> None:
    plane = frame.planes[index]
    item = data.dtype.itemsize
    arr = np.frombuffer(plane, data.dtype).reshape(plane.height, plane.line_size // item)
    arr[:, : plane.width] = data


def decode_frames(c: av.container.InputContainer, vs: av.VideoStream, errors: list[int],
                   start_pts: int | None = None) -> Iterator[av.VideoFrame]:
    """Decode packet by packet so one broken packet is skipped, not fatal. Includes the
    final flush packet (without it the decoder keeps the last frames)."""
    if start_pts is not None:
        c.seek(start_pts, stream=vs, backward=True, any_frame=False)
    for packet in c.demux(vs):
        try:
            frames = packet.decode()
        except av.error.InvalidDataError:
            errors[0] += 1
            continue
        except av.error.FFmpegError as err:
            if "Invalid data" in str(err) or getattr(err, "errno", 0) in (-1094995529,):
                errors[0] += 1
                continue
            raise
        for frame in frames:
            if getattr(frame, "is_corrupt", False):
                errors[0] += 1
            yield frame


@dataclass
class DecodeStats:
    errors: int = 0  # packets that failed to decode or frames flagged corrupt
    frames: int = 0


def rising_pts(frames: Iterator[av.VideoFrame], first: int, step: int, depth: int = 4
               ) -> Iterator[tuple[int, av.VideoFrame]]:
    """(pts, frame) with strictly rising pts. Decoders emit frames in display order, but damaged
    or oddly muxed streams (packed B-frames in AVI) label them out of order or twice: the labels
    are handed out sorted through a small window, so the output keeps the source's set of times
    instead of drifting. A frame without a label continues from the highest one seen."""
    labels: list[int] = []
    held: deque[av.VideoFrame] = deque()
    top: int | None = None
    last: int | None = None

    def release() -> tuple[int, av.VideoFrame]:
        nonlocal last
        pts = heapq.heappop(labels)
        if last is not None and pts <= last:
            pts = last + 1
        last = pts
        return pts, held.popleft()

    for frame in frames:
        pts = frame.pts if frame.pts is not None else (top + step if top is not None else first)
        top = pts if top is None else max(top, pts)
        heapq.heappush(labels, pts)
        held.append(frame)
        if len(held) > depth:
            yield release()
    while held:
        yield release()


def _frame_step(info: SourceInfo) -> int:
    if info.rate:
        return max(1, round(1 / (info.rate * info.time_base)))
    return 1


@dataclass
class ChunkSource:
    """The compressed packets a chunk needs, with what a decoder needs to read them. This is
    what crosses the network to a worker: no shared filesystem, no raw frames."""

    codec: str
    extradata: bytes | None
    width: int
    height: int
    time_base: Fraction
    packets: list[tuple[int | None, int | None, bool, bytes]]  # pts, dts, keyframe, data

    @property
    def nbytes(self) -> int:
        return sum(len(p[3]) for p in self.packets)


def read_chunk(info: SourceInfo, warmup_pts: int, end_pts: int | None, from_start: bool) -> ChunkSource:
    """Copy the packets that decode every frame with warmup_pts <= pts < end_pts.

    Starts at the keyframe at or before warmup_pts (or the file start). Stops after the first
    keyframe at or past end_pts and the leading pictures that follow it in decode order
    (their pts is below that keyframe's, so they belong to this chunk)."""
    packets: list[tuple[int | None, int | None, bool, bytes]] = []
    with open_input(info.path) as c:
        vs = c.streams[info.stream_index]
        cc = vs.codec_context
        if not from_start:
            try:
                c.seek(warmup_pts, stream=vs, backward=True, any_frame=False)
            except av.error.FFmpegError:
                c.seek(0, stream=vs, backward=True)
        passed_end = False
        try:
            for p in c.demux(vs):
                if not p.size:
                    continue
                if end_pts is not None and p.pts is not None and p.pts >= end_pts:
                    if passed_end and (p.is_keyframe or p.pts >= end_pts):
                        break
                    if p.is_keyframe:
                        passed_end = True
                packets.append((p.pts, p.dts, bool(p.is_keyframe), bytes(p)))
        except av.error.FFmpegError as err:
            if not packets:
                raise BadInputError(f"cannot read video packets from {info.path}: {err}") from err
            log.warning("stopped reading %s early: %s", info.path, err)
        return ChunkSource(cc.name, bytes(cc.extradata) if cc.extradata else None, cc.width or info.width,
                           cc.height or info.height, vs.time_base, packets)


def deinterlaced(frames: Iterator[av.VideoFrame], time_base: Fraction, field_order: int) -> Iterator[av.VideoFrame]:
    """The frames through FFmpeg's yadif, one frame out per frame in, same pts. Only frames the
    decoder marks interlaced are changed (deint=interlaced); the field shown first is kept as it
    is and the other one interpolated. yadif looks one frame ahead: it is flushed at the end.
    The field order comes from the stream: frames decoded here lack the top-field-first flag
    (yadif's parity=auto then takes every frame for bottom field first)."""
    parity = {2: "tff", 5: "tff", 3: "bff", 4: "bff"}.get(field_order, "auto")
    graph = None
    for frame in _with_end(frames):
        if graph is None:
            if frame is None:
                return
            graph = av.filter.Graph()
            buf = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format, time_base=time_base)
            yadif = graph.add("yadif", f"mode=send_frame:parity={parity}:deint=interlaced")
            sink = graph.add("buffersink")
            buf.link_to(yadif)
            yadif.link_to(sink)
            graph.configure()
        if frame is not None and frame.time_base is None:
            frame.time_base = time_base
        graph.vpush(frame)
        while True:
            try:
                out = graph.vpull()
            except (BlockingIOError, av.error.EOFError):
                break
            if out.pts is not None and out.time_base and out.time_base != time_base:
                out.pts = round(out.pts * out.time_base / time_base)  # yadif halves the time base
                out.time_base = time_base
            yield out


def _with_end(frames: Iterator[av.VideoFrame]) -> Iterator[av.VideoFrame | None]:
    yield from frames
    yield None


def decode_chunk(src: ChunkSource, info: SourceInfo, start_pts: int, end_pts: int | None,
                 stats: DecodeStats | None = None, deinterlace: bool = False) -> Iterator[tuple[int, np.ndarray]]:
    """(pts, Y plane) for each decoded frame with start_pts <= pts < end_pts.

    A packet that fails to decode is counted and skipped (the decoder conceals what it can);
    the final empty packet flushes the frames the decoder still holds. `deinterlace`: interlaced
    frames go through yadif first (the output is then progressive)."""
    stats = stats if stats is not None else DecodeStats()
    dec = av.CodecContext.create(src.codec, "r")
    if src.extradata:
        dec.extradata = src.extradata
    dec.width, dec.height = src.width, src.height
    dec.thread_type = "AUTO"
    step = _frame_step(info)

    def frames() -> Iterator[av.VideoFrame]:
        for item in [*src.packets, None]:  # None: the flush packet
            packet = None
            if item is not None:
                pts, dts, key, data = item
                # FFmpeg-owned copy: a packet wrapping Python bytes is released through a
                # callback that needs the GIL, from the decoder's threads, which deadlocks
                # when the decoder is freed while holding the GIL.
                packet = av.Packet(len(data))
                memoryview(packet)[:] = data
                packet.pts, packet.dts = pts, dts
                packet.time_base = src.time_base
                packet.is_keyframe = key
            try:
                yield from dec.decode(packet)
            except av.error.EOFError:
                return
            except av.error.FFmpegError:
                stats.errors += 1
                if packet is None:
                    return

    def counted() -> Iterator[av.VideoFrame]:
        for frame in frames():
            if getattr(frame, "is_corrupt", False):
                stats.errors += 1
            yield frame

    decoded = deinterlaced(counted(), src.time_base, info.field_order) if deinterlace else counted()
    for pts, frame in rising_pts(decoded, start_pts, step):
        if pts < start_pts:
            continue
        if end_pts is not None and pts >= end_pts:
            break
        if working_layout(frame.format.name) is None:
            frame = frame.reformat(format="yuv420p")
        stats.frames += 1
        yield pts, read_plane(frame, 0)


def keyframe_pts(info: SourceInfo) -> list[int]:
    """Timestamps of the keyframes (container demux only, no decoding)."""
    out: list[int] = []
    with open_input(info.path) as c:
        vs = c.streams[info.stream_index]
        for packet in c.demux(vs):
            if packet.size and packet.is_keyframe and packet.pts is not None:
                out.append(int(packet.pts))
    return sorted(set(out))


def frame_pts(info: SourceInfo) -> list[int]:
    """Presentation timestamps of all frames, by demux (no decoding)."""
    out: list[int] = []
    with open_input(info.path) as c:
        vs = c.streams[info.stream_index]
        for packet in c.demux(vs):
            if packet.size and packet.pts is not None:
                out.append(int(packet.pts))
    return sorted(out)


# --- output -----------------------------------------------------------------------------


def container_format(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in CONTAINERS:
        raise ConfigError(f"unsupported output extension {suffix!r}; use one of {', '.join(CONTAINERS)}")
    return CONTAINERS[suffix]


def output_pix_fmt(info: SourceInfo, encoder: str) -> str:
    """Keep the source's chroma layout and bit depth when the encoder can; luma stays exact."""
    codec = ENCODERS[encoder][0]
    supported = {f.name for f in av.Codec(codec, "w").video_formats}
    bits = info.bits
    suffix = "" if bits == 8 else f"{bits}le"
    want = f"yuv{info.subsampling}p{suffix}"
    if codec == "libx265" and min(info.width, info.height) < 64:
        # libx265 corrupts its heap (the process aborts) on some tiny sizes, e.g. 40x24, 34x18.
        raise ConfigError(f"h265 cannot encode frames this small ({info.width}x{info.height}); "
                          "use --encoder h264 or ffv1")
    if codec in ("libx264", "libx265") and (info.width % 2 or info.height % 2):
        # x264/x265 refuse subsampled chroma at odd sizes: keep full-resolution chroma instead.
        for full in (f"yuv444p{suffix}", "yuv444p"):
            if full in supported:
                return full
    if want in supported:
        return want
    for fallback in (f"yuv422p{suffix}", f"yuv420p{suffix}", "yuv422p10le", "yuv420p"):
        if fallback in supported:
            return fallback
    raise ConfigError(f"encoder {encoder} cannot write this source's pixel format {info.pix_fmt}")


def _muxer_options(fmt: str, tb: Fraction) -> dict[str, str]:
    # MP4/MOV store edit lists in the movie timescale (1000 by default), which rounds the first
    # pts of a segment; a movie timescale equal to the track's keeps every pts exact.
    if fmt in ("mp4", "mov") and tb.numerator == 1 and tb.denominator < 2**31:
        return {"movie_timescale": str(tb.denominator)}
    return {}


class SegmentEncoder:
    """Encodes composed frames (original Y + new U, V) into one segment, in memory or a file."""

    def __init__(self, sink: str | BinaryIO, fmt: str, info: SourceInfo, cfg: JobConfig) -> None:
        self.info = info
        self.pix_fmt = output_pix_fmt(info, cfg.encoder)
        fmt_obj = av.VideoFormat(self.pix_fmt)
        self.bits = fmt_obj.components[0].bits
        self.chroma_size = (fmt_obj.chroma_width(info.width), fmt_obj.chroma_height(info.height))
        self.container = av.open(sink, "w", format=fmt, options=_muxer_options(fmt, info.time_base))
        codec = ENCODERS[cfg.encoder][0]
        s = self.container.add_stream(codec)
        s.width, s.height, s.pix_fmt = info.width, info.height, self.pix_fmt
        s.time_base = info.time_base
        cc = s.codec_context
        cc.time_base = info.time_base
        if info.rate:
            cc.framerate = info.rate
        if info.sar:
            cc.sample_aspect_ratio = info.sar
        cc.color_range = RANGE_JPEG if info.full_range else 1
        for attr in ("colorspace", "color_primaries", "color_trc"):
            value = getattr(info, attr)
            if value and value != 2:  # 2 = unspecified
                setattr(cc, attr, value)
        if info.colorspace in (0, 2):  # untagged source: tag the matrix the chroma was made with
            cc.colorspace = COLORSPACE_BT709 if info.matrix == "bt709" else COLORSPACE_SMPTE170M
        # Interlaced film stays interlaced and says in which order its fields are shown; with
        # --deinterlace the frames were made progressive on decode and are tagged so.
        field_order = FIELD_PROGRESSIVE if cfg.deinterlace else info.field_order
        if field_order:
            cc.field_order = field_order
        opts: dict[str, str] = {}
        if cfg.encoder in ("h264", "h265"):
            opts = {"crf": str(cfg.crf), "preset": cfg.preset}
            # x264 codes interlaced pictures (field/MBAFF; tff/bff is the order shown) when each
            # field has whole chroma rows: 4:2:0 needs a height divisible by 4.
            if (cfg.encoder == "h264" and field_order in FIELD_NAMES
                    and info.height % (4 if "420" in self.pix_fmt else 2) == 0):
                opts["x264-params"] = "interlaced=1:" + ("tff=1" if field_order in (2, 5) else "bff=1")
            if cfg.encoder == "h265":
                opts["x265-params"] = "log-level=error"
        elif cfg.encoder == "ffv1":
            opts = {"level": "3", "slicecrc": "1"}
        elif cfg.encoder == "prores":
            opts = {"profile": "3"}  # HQ
        cc.options = opts
        if info.rotation:
            s.set_display_rotation(info.rotation)
        self.stream = s
        self.frames = 0

    def write(self, pts: int, y: np.ndarray, u: np.ndarray, v: np.ndarray) -> None:
        frame = av.VideoFrame(self.info.width, self.info.height, self.pix_fmt)
        if self.bits != self.info.bits:  # e.g. 8-bit source into 10-bit ProRes: exact shift
            shift = self.bits - self.info.bits
            y = y.astype(np.uint16) << shift if shift > 0 else (y >> -shift).astype(np.uint8)
        write_plane(frame, 0, y)
        write_plane(frame, 1, u)
        write_plane(frame, 2, v)
        frame.pts = pts
        frame.time_base = self.info.time_base
        frame.color_range = RANGE_JPEG if self.info.full_range else 1
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        self.container.close()


def encode_segment_bytes(fmt: str, info: SourceInfo, cfg: JobConfig,
                         frames: Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]) -> tuple[bytes, int]:
    buf = io.BytesIO()
    enc = SegmentEncoder(buf, fmt, info, cfg)
    for pts, y, u, v in frames:
        enc.write(pts, y, u, v)
    enc.close()
    return buf.getvalue(), enc.frames


def check_streams_fit(info: SourceInfo, fmt: str) -> None:
    """Fail before any work when the output container cannot carry a stream that must be copied."""
    if not any(t in ("audio", "subtitle") for _, t, _ in info.other_streams):
        return
    with open_input(info.path) as src:
        for s in src.streams:
            if s.index == info.stream_index or s.type not in ("audio", "subtitle"):
                continue
            try:
                with av.open(io.BytesIO(), "w", format=fmt) as probe_out:
                    probe_out.add_stream_from_template(s)
                    probe_out.start_encoding()
            except (av.error.FFmpegError, ValueError) as err:
                name = s.codec_context.name if s.codec_context else "unknown"
                raise ConfigError(
                    f"the output container ({fmt}) cannot hold {s.type} stream #{s.index} ({name}); "
                    f"use a .mkv output, which can"
                ) from err


def join(segments: list[Path], info: SourceInfo, dest: Path, fmt: str) -> dict[str, int]:
    """Concatenate video segments by stream copy and copy every audio/subtitle packet of the
    source, interleaved by time, with the source's metadata and chapters. Writes `dest` (the
    caller renames it into place)."""
    counts = {"video": 0, "audio": 0, "subtitle": 0}
    with open_input(info.path) as src, av.open(str(dest), "w", format=fmt,
                                          options=_muxer_options(fmt, info.time_base)) as out:
        out.metadata.update({k: v for k, v in src.metadata.items() if k.lower() not in ("encoder",)})
        chapters = src.chapters()
        if chapters:
            out.set_chapters(chapters)
        first_seg = av.open(str(segments[0]))
        vtemplate = first_seg.streams.video[0]
        vout = out.add_stream_from_template(vtemplate)
        vout.time_base = info.time_base
        if info.rotation:
            vout.set_display_rotation(info.rotation)
        first_seg.close()
        copied: dict[int, Any] = {}
        for s in src.streams:
            if s.type in ("audio", "subtitle") and s.index != info.stream_index:
                o = out.add_stream_from_template(s)
                o.time_base = s.time_base
                o.metadata.update(s.metadata)
                o.disposition = s.disposition
                copied[s.index] = o
        src_vs = src.streams[info.stream_index]
        vout.metadata.update({k: v for k, v in src_vs.metadata.items() if k.lower() != "encoder"})

        def video_packets() -> Iterator[av.Packet]:
            last_dts: int | None = None
            for seg in segments:
                with av.open(str(seg)) as sc:
                    ss = sc.streams.video[0]
                    for p in sc.demux(ss):
                        if not p.size:
                            continue
                        # Segment time bases equal the source's for MP4/MOV; MKV rounds to ms.
                        if ss.time_base != info.time_base:
                            p.pts = _rescale(p.pts, ss.time_base, info.time_base)
                            p.dts = _rescale(p.dts, ss.time_base, info.time_base)
                            p.duration = _rescale(p.duration, ss.time_base, info.time_base) or 0
                            p.time_base = info.time_base
                        if p.dts is not None and last_dts is not None and p.dts <= last_dts:
                            p.dts = last_dts + 1  # keep decode order strictly rising across seams
                        last_dts = p.dts if p.dts is not None else last_dts
                        yield p

        def other_packets() -> Iterator[av.Packet]:
            if not copied:
                return
            for p in src.demux([src.streams[i] for i in copied]):
                if p.size == 0:
                    continue
                yield p

        vit, oit = video_packets(), other_packets()
        vp, op = next(vit, None), next(oit, None)
        while vp is not None or op is not None:
            take_video = op is None or (vp is not None and _when(vp) <= _when(op))
            if take_video:
                vp.stream = vout
                out.mux(vp)
                counts["video"] += 1
                vp = next(vit, None)
            else:
                stream = copied[op.stream.index]
                kind = op.stream.type
                op.stream = stream
                out.mux(op)
                counts[kind] += 1
                op = next(oit, None)
    return counts


def _rescale(v: int | None, a: Fraction, b: Fraction) -> int | None:
    return None if v is None else round(v * a / b)


def _when(p: av.Packet) -> float:
    t = p.dts if p.dts is not None else p.pts
    return float((t or 0) * p.time_base) if p.time_base else 0.0

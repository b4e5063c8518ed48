"""Chunks on Ray: model-holding actors, the driver as the only writer.

`ray.init()` without an address starts an embedded local cluster; `--ray-address` joins an
existing one. Each `ColorizeWorker` actor holds the generator (one GPU each on a GPU cluster,
else CPU) and turns a chunk's compressed packets into an encoded segment: only compressed
bytes cross the network, so no shared filesystem is needed. The driver reads packets, limits
work in flight with `ray.wait`, and writes each finished segment and the manifest itself.
Actors restart and their calls retry when a worker dies; a chunk whose retries run out is
sent to another actor.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .config import JobConfig
from .errors import ConfigError, OutputError
from .guide import Guide, chunk_guides
from .model import load_generator
from .plan import Chunk
from .video import SourceInfo, read_chunk

log = logging.getLogger(__name__)

IN_FLIGHT_PER_WORKER = 2  # one running, one queued: keeps actors busy without hoarding memory
RESUBMITS = 3


def _worker_class() -> Any:
    import ray

    @ray.remote(max_restarts=3, max_task_retries=3)
    class ColorizeWorker:
        """Holds one generator; colorizes whole chunks (decode, model, smoothing, encode)."""

        # The weights come from a small store actor on first use (and again after a restart):
        # constructor arguments in the object store are not guaranteed to survive a restart.
        def __init__(self, store_name: str, weights_name: str, device: str, precision: str, backend: str,
                     threads: int) -> None:
            self.store_name = store_name
            self.args = (weights_name, device, precision, backend)
            self.threads = threads
            self.colorizer: Any = None

        def _model(self) -> Any:
            if self.colorizer is None:
                import ray as _ray
                import torch

                from .model import Colorizer

                if self.threads > 0 and not torch.cuda.is_available():
                    torch.set_num_threads(self.threads)
                name, device, precision, backend = self.args
                weights = _ray.get(_ray.get_actor(self.store_name).get.remote())
                self.colorizer = Colorizer.from_file(name, device, precision, data=weights, backend=backend)
            return self.colorizer

        def where(self) -> dict[str, Any]:
            import ray as _ray

            return {"node": _ray.get_runtime_context().get_node_id(), "device": str(self._model().device),
                    "pid": os.getpid()}

        def process(self, info: SourceInfo, chunk: Chunk, source: Any, cfg: JobConfig,
                    fmt: str, progress: Any = None, guides: Any = ()) -> tuple[bytes, int, int]:
            from .pipeline import process_chunk

            pending = [0]

            def tick(n: int) -> None:
                # Fire-and-forget, every few frames: the driver's bar moves within a chunk.
                pending[0] += n
                if progress is not None and pending[0] >= 8:
                    progress.add.remote(pending[0])
                    pending[0] = 0

            result = process_chunk(info, chunk, source, cfg, self._model(), fmt, tick, guides)
            if progress is not None and pending[0]:
                progress.add.remote(pending[0])
            return result

    return ColorizeWorker


def _progress_class() -> Any:
    import ray

    @ray.remote(num_cpus=0)
    class Progress:
        """Frames encoded so far, across all workers (a retried chunk counts again)."""

        def __init__(self) -> None:
            self.frames = 0

        def add(self, n: int) -> None:
            self.frames += n

        def value(self) -> int:
            return self.frames

    return Progress


def _store_class() -> Any:
    import ray

    @ray.remote(num_cpus=0)
    class WeightsStore:
        """Holds the generator checkpoint bytes for the workers (sent once from the driver)."""

        def __init__(self) -> None:
            self.data = b""

        def put(self, data: bytes) -> None:
            self.data = data

        def get(self) -> bytes:
            return self.data

    return WeightsStore


class RayExecutor:
    """Runs chunks on Ray actors; yields finished (chunk, segment bytes, frames, errors) in
    completion order."""

    def __init__(self, actors: list[Any], weights_sha256: str, own_cluster: bool) -> None:
        self.actors = actors
        self.weights_sha256 = weights_sha256
        self.own_cluster = own_cluster
        self.store: Any = None
        self.takes_guide = False

    @classmethod
    def start(cls, cfg: JobConfig, ray_address: str | None = None, workers: int | None = None,
              gpus_per_worker: float | None = None, num_cpus: int | None = None) -> RayExecutor:
        # Check the weights before paying for a cluster: a missing file is a clear error now.
        path = cfg.weights_path
        net, meta = load_generator(path)
        weights = path.read_bytes()
        try:
            import ray
        except ImportError as err:
            raise ConfigError(f"Ray is not available ({err})") from err

        own = not ray.is_initialized()
        if own:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "configure_logging": True, "logging_level": logging.ERROR}
            if ray_address:
                kwargs["address"] = ray_address
            else:
                kwargs["num_cpus"] = num_cpus or os.cpu_count() or 1
                # Ray runs workers at niceness 15; an embedded cluster is the user's foreground job.
                kwargs["_system_config"] = {"worker_niceness": 0}
            try:
                ray.init(**kwargs)
            except Exception as err:  # ConnectionError, RuntimeError, ... all mean "no cluster"
                raise ConfigError(f"cannot start or join the Ray cluster ({ray_address or 'local'}): {err}") from err
        resources = ray.cluster_resources()
        gpus = float(resources.get("GPU", 0))
        cpus = float(resources.get("CPU", 1))
        if cfg.device == "cpu":
            gpus = 0.0
        per = gpus_per_worker if gpus_per_worker is not None else 1.0
        if gpus_per_worker is not None and cfg.device != "cpu" and not gpus:
            # Asked for GPUs on a cluster that has none up yet: request them anyway, so an
            # autoscaling cluster starts GPU workers (the actors wait until they arrive).
            log.info("no GPU in the cluster yet: model workers will wait for GPU nodes")
            gpus = per * (workers or 1)
        if workers is None:
            workers = max(1, int(gpus // per)) if gpus >= per else 1
        if workers < 1:
            raise ConfigError("--workers must be at least 1 with Ray (0 runs without Ray)")
        threads = 0 if gpus else max(1, int(cpus // workers))
        worker_cls = _worker_class()
        store_name = f"vidcolor-weights-{uuid.uuid4().hex[:12]}"
        store = _store_class().options(name=store_name).remote()
        ray.get(store.put.remote(weights))
        actors = []
        for _ in range(workers):
            # CPU actors reserve one CPU but run torch on `threads`: decode/encode threads share them.
            opts: dict[str, Any] = {"num_gpus": per} if gpus else {"num_cpus": 1}
            actors.append(worker_cls.options(**opts).remote(store_name, str(path), cfg.device if gpus else "cpu",
                                                            cfg.precision, cfg.backend, threads))
        log.info("Ray: %d model worker(s) on %s (%.0f GPU, %.0f CPU in the cluster)", workers,
                 ray_address or "a local cluster", gpus, cpus)
        ex = cls(actors, meta["sha256"], own)
        ex.takes_guide = net.cfg.guide
        ex.store = store
        return ex

    def placement(self) -> list[dict[str, Any]]:
        import ray

        return ray.get([a.where.remote() for a in self.actors])

    def run(self, info: SourceInfo, chunks: list[Chunk], cfg: JobConfig, fmt: str,
            on_frames: Callable[[int], None] | None, guides: Sequence[Guide] = ()
            ) -> Iterator[tuple[Chunk, bytes, int, int]]:
        import ray
        from ray.exceptions import RayError

        pending = list(chunks)
        inflight: dict[Any, tuple[Chunk, Any, int]] = {}  # ref -> (chunk, source ref, attempt)
        load = {i: 0 for i in range(len(self.actors))}
        owner: dict[Any, int] = {}
        limit = IN_FLIGHT_PER_WORKER * len(self.actors)
        progress = _progress_class().remote() if on_frames else None
        total = sum(c.frames for c in chunks)
        shown = done_frames = 0

        def advance(to: int) -> None:
            nonlocal shown
            to = min(to, total)
            if on_frames and to > shown:
                on_frames(to - shown)
                shown = to

        def submit(chunk: Chunk, source_ref: Any, attempt: int) -> None:
            i = min(load, key=lambda k: (load[k], k))
            ref = self.actors[i].process.remote(info, chunk, source_ref, cfg, fmt, progress,
                                                chunk_guides(guides, chunk))
            inflight[ref] = (chunk, source_ref, attempt)
            owner[ref] = i
            load[i] += 1

        try:
            while pending or inflight:
                while pending and len(inflight) < limit:
                    chunk = pending.pop(0)
                    source = read_chunk(info, chunk.warmup_pts, chunk.end_pts, from_start=chunk.index == 0)
                    submit(chunk, ray.put(source), 0)
                ready, _ = ray.wait(list(inflight), num_returns=1, timeout=0.5)
                if not ready:
                    if progress is not None:
                        advance(max(done_frames, ray.get(progress.value.remote())))
                    continue
                ref = ready[0]
                chunk, source_ref, attempt = inflight.pop(ref)
                load[owner.pop(ref)] -= 1
                try:
                    data, frames, errors = ray.get(ref)
                except RayError as err:
                    cause = getattr(err, "cause", None)
                    from .errors import VidcolorError

                    if isinstance(cause, VidcolorError):
                        raise cause from err
                    if attempt + 1 >= RESUBMITS:
                        raise OutputError(f"chunk {chunk.index} failed {RESUBMITS} times on Ray workers: "
                                          f"{str(err).splitlines()[0]}") from err
                    log.warning("chunk %d lost with its worker (%s); resubmitting", chunk.index,
                                type(err).__name__)
                    submit(chunk, source_ref, attempt + 1)
                    continue
                done_frames += frames
                advance(done_frames)
                yield chunk, data, frames, errors
        finally:
            for ref in inflight:
                ray.cancel(ref, force=True)
            if progress is not None:
                ray.kill(progress)

    def shutdown(self) -> None:
        import ray

        for a in [*self.actors, self.store]:
            try:
                ray.kill(a)
            except Exception:
                pass
        if self.own_cluster:
            ray.shutdown()

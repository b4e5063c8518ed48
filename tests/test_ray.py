"""Ray: the same output as in-process, survives a killed actor, places actors on GPU nodes."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import decode_all, make_clip, packets, plane

from vidcolor.config import JobConfig
from vidcolor.pipeline import run_job

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.slow]

os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # throwaway local clusters in tests only


def planes(path: Path) -> list[tuple[np.ndarray, ...]]:
    return [(plane(f, 0), plane(f, 1), plane(f, 2)) for f in decode_all(path)]


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return make_clip(tmp_path / "in.mp4", width=96, height=64, frames=48, audio_tracks=1, gop=12)


def test_ray_output_equals_in_process(local_ray: None, tmp_path: Path, clip: Path, cfg: JobConfig) -> None:
    from vidcolor.distributed import RayExecutor

    c = dataclasses.replace(cfg, chunk_seconds=0.5, encoder="ffv1")
    local = tmp_path / "local.mkv"
    run_job(clip, local, c)
    ex = RayExecutor.start(c, workers=2)
    try:
        res = run_job(clip, tmp_path / "ray.mkv", c, executor=ex)
    finally:
        ex.shutdown()
    assert res.chunks_total == 4
    a, b = planes(local), planes(tmp_path / "ray.mkv")
    assert len(a) == len(b) == 48
    assert all(all(np.array_equal(x, y) for x, y in zip(fa, fb)) for fa, fb in zip(a, b))
    assert [p for p, _ in packets(clip)[0]] == [p for p, _ in packets(tmp_path / "ray.mkv")[0]]


def test_job_survives_a_killed_actor(local_ray: None, tmp_path: Path, clip: Path, cfg: JobConfig) -> None:
    from vidcolor.distributed import RayExecutor

    c = dataclasses.replace(cfg, chunk_seconds=0.5, encoder="ffv1")
    local = tmp_path / "local.mkv"
    run_job(clip, local, c)
    ex = RayExecutor.start(c, workers=1)
    inner = ex.run
    killed = []

    def run_and_kill(*args, **kwargs):  # type: ignore[no-untyped-def]
        for item in inner(*args, **kwargs):
            if not killed:
                # The actor dies with work in flight; Ray restarts it and retries the calls.
                ray.kill(ex.actors[0], no_restart=False)
                killed.append(True)
            yield item

    ex.run = run_and_kill  # type: ignore[method-assign]
    try:
        res = run_job(clip, tmp_path / "ray.mkv", c, executor=ex)
    finally:
        ex.shutdown()
    assert killed and res.frames == 48
    a, b = planes(local), planes(tmp_path / "ray.mkv")
    assert all(all(np.array_equal(x, y) for x, y in zip(fa, fb)) for fa, fb in zip(a, b))


def test_multi_node_cluster_places_model_on_gpu_node(tmp_path: Path, clip: Path, cfg: JobConfig) -> None:
    """A head and two worker nodes on one machine; one worker has a (fake) GPU. The model actor
    asks for a GPU, so it must land there; torch sees no CUDA and falls back to the CPU."""
    from ray.cluster_utils import Cluster

    from vidcolor.distributed import RayExecutor

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cpu_node = cluster.add_node(num_cpus=1)
    gpu_node = cluster.add_node(num_cpus=1, num_gpus=1)
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
        c = dataclasses.replace(cfg, chunk_seconds=0.5, encoder="ffv1")
        ex = RayExecutor.start(c)
        try:
            where = ex.placement()
            assert len(where) == 1  # one actor per GPU
            assert where[0]["node"] == gpu_node.node_id != cpu_node.node_id
            assert where[0]["device"] == "cpu"
            res = run_job(clip, tmp_path / "ray.mkv", c, executor=ex)
        finally:
            ex.shutdown()
        assert res.frames == 48
        local = tmp_path / "local.mkv"
        run_job(clip, local, c)
        a, b = planes(local), planes(tmp_path / "ray.mkv")
        assert all(all(np.array_equal(x, y) for x, y in zip(fa, fb)) for fa, fb in zip(a, b))
    finally:
        ray.shutdown()
        cluster.shutdown()

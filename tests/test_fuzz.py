"""The readers of vidcolor's own files, fed random, truncated and bit-flipped bytes and JSON of the
wrong shape: each either loads or raises its own error type (ConfigError, ResumeError,
WeightsError), never anything else. Seeded, so a failure names a case that can be replayed."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from vidcolor.config import JobConfig, TrainConfig, load_config
from vidcolor.errors import ConfigError, ResumeError, WeightsError
from vidcolor.model import load_generator
from vidcolor.plan import Chunk, Manifest, load_manifest

ROOT = Path(__file__).resolve().parents[1]


def mutations(base: bytes, rng: np.random.Generator, n: int) -> list[bytes]:
    """Random bytes, truncations, bit flips, byte overwrites and spliced duplicates of `base`."""
    out: list[bytes] = [b"", base[:1], base]
    for i in range(n):
        kind = i % 5
        if kind == 0:
            out.append(rng.integers(0, 256, int(rng.integers(1, 400)), dtype=np.uint8).tobytes())
        elif kind == 1:
            out.append(base[: int(rng.integers(0, len(base)))])
        elif kind == 2:
            b = bytearray(base)
            for _ in range(int(rng.integers(1, 4))):
                pos = int(rng.integers(0, len(b)))
                b[pos] ^= 1 << int(rng.integers(0, 8))
            out.append(bytes(b))
        elif kind == 3:
            b = bytearray(base)
            pos = int(rng.integers(0, len(b)))
            b[pos : pos + 8] = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()
            out.append(bytes(b))
        else:
            a, c = sorted(int(x) for x in rng.integers(0, len(base), 2))
            out.append(base[:c] + base[a:])
    return out


def check_only(exc: type[Exception], load, cases: list[bytes], path: Path) -> int:
    """Run `load(path)` on every case; returns how many loaded. Any other exception fails with
    the case's index and first bytes."""
    loaded = 0
    for i, data in enumerate(cases):
        path.write_bytes(data)
        try:
            load(path)
            loaded += 1
        except exc as err:
            assert "\n" not in str(err), f"case {i}: multi-line message {str(err)!r}"
        except BaseException as err:  # the point of the test
            pytest.fail(f"case {i} ({len(data)} bytes, {data[:60]!r}...): {type(err).__name__}: {err}")
    return loaded


# --- config ------------------------------------------------------------------------------


def random_toml(rng: np.random.Generator, keys: list[str]) -> bytes:
    """Syntactically plausible TOML: known and unknown keys with values of every TOML type."""
    values = ["1", "-7", "0", "99999999999999999999999", "1.5", "-0.0", "inf", "nan", "-inf", "1e400", "true",
              "false", '"h264"', '""', "'x'", "[1, 2]", '["a"]', "{a = 1}", "1979-05-27", "07:32:00", '"\\u00e9"']
    lines = []
    for _ in range(int(rng.integers(1, 6))):
        key = keys[int(rng.integers(0, len(keys)))] if rng.random() < 0.8 else f"k{int(rng.integers(0, 99))}"
        if rng.random() < 0.1:
            lines.append(f"[{key}]")
        lines.append(f"{key} = {values[int(rng.integers(0, len(values)))]}")
    return "\n".join(lines).encode()


@pytest.mark.parametrize("cls, base_file", [(JobConfig, "configs/default.toml"),
                                             (TrainConfig, "configs/train_cpu.toml")])
def test_config_fuzz(tmp_path, cls, base_file):
    rng = np.random.default_rng(11)
    base = (ROOT / base_file).read_bytes()
    keys = [f for f in cls.__dataclass_fields__]
    cases = mutations(base, rng, 200) + [random_toml(rng, keys) for _ in range(200)]
    loaded = check_only(ConfigError, lambda p: load_config(cls, p), cases, tmp_path / "c.toml")
    assert 0 < loaded < len(cases)
    with pytest.raises(ConfigError):  # a folder or a missing file: still ConfigError
        load_config(cls, tmp_path)
    with pytest.raises(ConfigError):
        load_config(cls, tmp_path / "missing.toml")


def test_config_rejects_non_finite(tmp_path):
    """nan/inf pass a naive range check (every comparison with nan is False)."""
    for text in ("chunk_seconds = nan", "saturation = nan", "smoothing_strength = nan", "scene_cut_threshold = nan",
                 "chunk_seconds = -inf"):
        p = tmp_path / "c.toml"
        p.write_text(text)
        with pytest.raises(ConfigError):
            load_config(JobConfig, p)


# --- manifest ------------------------------------------------------------------------------


def real_manifest(path: Path) -> Manifest:
    chunks = [Chunk(0, 0, 3000, 0, 25), Chunk(1, 3000, None, 2200, 17)]
    done = {0: {"frames": 25, "bytes": 1234, "sha256": "ab" * 32, "file": "seg_00000.mp4"}}
    fp = {"input": {"size": 10, "mtime_ns": 1, "sha256_head_tail": "cd" * 32}, "config": "ef" * 32,
          "weights": "01" * 32, "output_format": "mp4"}
    return Manifest(path, fp, chunks, done, 1700000000.0, 12.5, ".mp4")


def wrong_shapes(doc: object, rng: np.random.Generator, n: int) -> list[bytes]:
    """The real manifest with one node (or key) replaced by a value of another type."""
    weird = [None, True, 0, -1, 2**70, 1e308, float("inf"), "", "x", "../../etc/passwd", ".hidden", [], [1], {},
             {"a": 1}, [[[[]]]]]

    def paths(node: object, prefix: tuple = ()) -> list[tuple]:
        out = [prefix]
        if isinstance(node, dict):
            for k, v in node.items():
                out += paths(v, (*prefix, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                out += paths(v, (*prefix, i))
        return out

    all_paths = paths(doc)[1:]
    cases = []
    for _ in range(n):
        d = copy.deepcopy(doc)
        where = all_paths[int(rng.integers(0, len(all_paths)))]
        parent = d
        for k in where[:-1]:
            parent = parent[k]
        value = weird[int(rng.integers(0, len(weird)))]
        if rng.random() < 0.15 and isinstance(parent, dict):
            del parent[where[-1]]
        else:
            parent[where[-1]] = value
        cases.append(json.dumps(d).encode())
    return cases


def test_manifest_fuzz(tmp_path):
    rng = np.random.default_rng(12)
    path = tmp_path / "manifest.json"
    base = real_manifest(path).to_json()
    doc = json.loads(base)
    cases = mutations(base, rng, 250) + wrong_shapes(doc, rng, 250) + [
        b"[" * 100_000 + b"]" * 100_000,  # nesting deeper than the JSON parser recurses
        json.dumps({**doc, "started": 10**400}).encode(),  # an int no float holds
        b"\xff\xfe{}",
        b"null",
        b'"manifest"',
    ]
    loaded = check_only(ResumeError, load_manifest, cases, path)
    assert loaded > 0
    with pytest.raises(ResumeError):
        load_manifest(tmp_path / "nope.json")


def test_manifest_types_checked(tmp_path):
    """A manifest that loads is safe to use: every field the pipeline reads has its type."""
    path = tmp_path / "manifest.json"
    doc = json.loads(real_manifest(path).to_json())
    bad = [
        ("done", "0", "frames", "25"),
        ("done", "0", "bytes", None),
        ("done", "0", "sha256", 5),
        ("done", "0", "file", 7),
        ("chunks", 1, "end_pts", "x"),
        ("chunks", 0, "frames", True),
    ]
    for *where, value in bad:
        d = copy.deepcopy(doc)
        node = d
        for k in where[:-1]:
            node = node[k]
        node[where[-1]] = value
        path.write_text(json.dumps(d))
        with pytest.raises(ResumeError):
            load_manifest(path)
    d = copy.deepcopy(doc)
    path.write_text(json.dumps(d))
    m = load_manifest(path)
    assert m.frames_total == 42 and m.frames_done == 25


# --- model weights ---------------------------------------------------------------------------


def test_weights_fuzz(tmp_path, tiny_weights):
    """Truncations and bit flips of a real checkpoint (a zip around a pickle). The pickle and the
    zip directory get extra flips: random positions mostly land in tensor data and just load."""
    rng = np.random.default_rng(13)
    base = tiny_weights.read_bytes()
    pkl_end = base.index(b"archive/.format_version")  # data.pkl comes first in torch's zip
    tail = len(base) - 2048
    cases = mutations(base, rng, 40)
    for i in range(40):
        b = bytearray(base)
        lo, hi = (30, pkl_end) if i % 2 == 0 else (tail, len(base))
        for _ in range(int(rng.integers(1, 3))):
            pos = int(rng.integers(lo, hi))
            b[pos] ^= 1 << int(rng.integers(0, 8))
        cases.append(bytes(b))
    with warnings.catch_warnings(record=True) as caught:  # on a terminal a warning is a second line
        warnings.simplefilter("always")
        check_only(WeightsError, load_generator, cases, tmp_path / "w.pt")
    assert not caught, [str(w.message) for w in caught]

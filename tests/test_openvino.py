"""The OpenVINO backend: same colours as torch at every size, a cache that repairs itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidcolor import openvino_net
from vidcolor.config import ConfigError, JobConfig, load_config
from vidcolor.model import Colorizer, load_generator

pytestmark = pytest.mark.skipif(not openvino_net.available(), reason="openvino not installed")

# (h, w) after resizing to the working size: landscape, portrait, square, 4:3, tiny, not multiples of 32.
SIZES = ((144, 256), (256, 144), (96, 96), (144, 192), (40, 72), (150, 266))


def _guide(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    g = np.zeros((2, h, w, 3), np.float32)
    g[:, h // 4 : h // 2, w // 4 : w // 2] = (0.3 * 0.8, -0.2 * 0.8, 0.8)  # a dense patch
    g[:, rng.integers(0, h, 5), rng.integers(0, w, 5)] = (-0.4, 0.4, 1.0)  # and points
    return g


@pytest.mark.parametrize("guided", [False, True])
def test_openvino_f32_matches_torch_at_every_size(guided: bool) -> None:
    # The trace freezes EfficientNet's TF-"same" padding for the example's size; inputs padded to
    # multiples of 32 must make that harmless at every size and aspect ratio.
    net, _ = load_generator(JobConfig().weights_path)
    ref = Colorizer(net, "cpu", "fp32", backend="torch")
    ov = Colorizer(net, "cpu", "fp32", backend="openvino")
    assert ov.backend == "openvino" and ov.precision == "fp32"
    rng = np.random.default_rng(0)
    for h, w in SIZES:
        grey = rng.random((2, h, w), np.float32)
        guide = _guide(h, w, rng) if guided else None
        a, b = ref.predict(grey, pad_to=4, guide=guide), ov.predict(grey, pad_to=4, guide=guide)
        assert a.shape == b.shape == (2, h, w, 2)
        assert np.abs(a - b).max() * 110 < 0.01, (h, w)  # Lab units


@pytest.mark.parametrize("scale", [1, 2])
def test_openvino_features_match_torch_at_every_size(scale: int) -> None:
    # The matching features (the encoder to stride 16, converted on its own) agree as well, at
    # the working size and at twice it (a frame matched to its own shot's keyframe).
    net, _ = load_generator(JobConfig().weights_path)
    ref = Colorizer(net, "cpu", "fp32", backend="torch")
    ov = Colorizer(net, "cpu", "fp32", backend="openvino")
    rng = np.random.default_rng(4)
    for h, w in SIZES:
        grey = rng.random((2, h, w), np.float32)
        (a, pad_a), (b, pad_b) = ref.features(grey, 4, scale), ov.features(grey, 4, scale)
        assert pad_a == pad_b and a.shape == b.shape and a.shape[0] == 2
        assert np.abs(a - b).max() < 1e-4, (h, w)


def test_openvino_bf16_close_to_torch() -> None:
    if not openvino_net.cpu_has_bf16():
        pytest.skip("this CPU has no native bf16")
    net, _ = load_generator(JobConfig().weights_path)
    grey = np.random.default_rng(1).random((4, 144, 256), np.float32)
    a = Colorizer(net, "cpu", "fp32", backend="torch").predict(grey, pad_to=4)
    c = Colorizer(net, "cpu", "auto", backend="openvino")
    assert c.precision == "bf16"
    b = c.predict(grey, pad_to=4)
    assert np.abs(a - b).mean() * 110 < 0.5  # Lab units; measured 0.16


def test_auto_backend_is_openvino_on_cpu(tiny_weights) -> None:
    c = Colorizer.from_file(tiny_weights, device="cpu")
    assert c.backend == "openvino"
    assert c.precision == ("bf16" if openvino_net.cpu_has_bf16() else "fp32")
    assert Colorizer.from_file(tiny_weights, device="cpu", backend="torch").backend == "torch"


def test_backend_option_validated() -> None:
    assert load_config(JobConfig, None, {"backend": "openvino"}).backend == "openvino"
    with pytest.raises(ConfigError, match="backend"):
        load_config(JobConfig, None, {"backend": "tensorrt"})


def test_cache_reused_and_repaired(tmp_path, monkeypatch) -> None:
    net, _ = load_generator(JobConfig().weights_path)
    grey = np.random.default_rng(2).random((1, 64, 96), np.float32)
    first = openvino_net.OpenVinoNet(net, "fp32", 3, cache=tmp_path)
    x = grey[:, None] * 2 - 1
    want = first(x)
    (entry,) = (tmp_path / "openvino").iterdir()
    assert (entry / "model.xml").is_file() and (entry / "model.bin").is_file()

    # A second process finds the cached model: no conversion.
    def no_convert(*a, **k):
        raise AssertionError("converted again although the cache holds the model")

    monkeypatch.setattr(openvino_net, "_convert", no_convert)
    assert np.array_equal(openvino_net.OpenVinoNet(net, "fp32", 3, cache=tmp_path)(x), want)
    monkeypatch.undo()

    # A damaged entry (a half-written file, garbage) is converted again, never an error.
    (entry / "model.xml").write_text("<net broken")
    assert np.array_equal(openvino_net.OpenVinoNet(net, "fp32", 3, cache=tmp_path)(x), want)
    assert "<net broken" not in (entry / "model.xml").read_text()
    # A cache that cannot be written (a file where the folder should be) only costs the conversion.
    blocked = tmp_path / "blocked"
    blocked.write_text("not a folder")
    assert np.array_equal(openvino_net.OpenVinoNet(net, "fp32", 3, cache=blocked)(x), want)


def test_cache_key_follows_the_weights(tiny_weights) -> None:
    a, _ = load_generator(tiny_weights)
    b, _ = load_generator(tiny_weights)
    assert openvino_net.model_key(a) == openvino_net.model_key(b)
    with torch.no_grad():
        next(b.parameters()).add_(0.01)
    assert openvino_net.model_key(a) != openvino_net.model_key(b)


def test_same_colours_whatever_ran_before(monkeypatch) -> None:
    # Each input shape gets its own compiled model; evicted and compiled again, or compiled after
    # other shapes, it must give the same bits (chunks, Ray actors and resumed runs depend on it).
    net, _ = load_generator(JobConfig().weights_path)
    rng = np.random.default_rng(3)
    a, b = rng.random((2, 1, 64, 96), np.float32), rng.random((2, 1, 96, 64), np.float32)
    ov = openvino_net.OpenVinoNet(net, "fp32", 3)
    first = ov(a)
    ov(b)
    assert np.array_equal(ov(a), first)
    monkeypatch.setattr(openvino_net, "MAX_SHAPES", 1)
    ov = openvino_net.OpenVinoNet(net, "fp32", 3)
    assert np.array_equal(ov(a), first)
    ov(b)  # evicts a's compiled model
    assert list(ov.requests) == [(2, 1, 96, 64)]
    assert np.array_equal(ov(a), first)
    assert np.array_equal(openvino_net.OpenVinoNet(net, "fp32", 3)(a), first)  # another process's

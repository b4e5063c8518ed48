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


@pytest.mark.parametrize("second_scale", [0.0, 2.0])
@pytest.mark.parametrize("guided", [False, True])
def test_openvino_f32_matches_torch_at_every_size(guided: bool, second_scale: float) -> None:
    # The trace freezes EfficientNet's TF-"same" padding for the example's size; inputs padded to
    # multiples of 32 must make that harmless at every size and aspect ratio (and at twice each
    # size, where second_scale runs the network too).
    net, _ = load_generator(JobConfig().weights_path)
    ref = Colorizer(net, "cpu", "fp32", backend="torch")
    ov = Colorizer(net, "cpu", "fp32", backend="openvino")
    assert ov.backend == "openvino" and ov.precision == "fp32"
    rng = np.random.default_rng(0)
    for h, w in SIZES:
        grey = rng.random((2, h, w), np.float32)
        guide = _guide(h, w, rng) if guided else None
        if guided:
            guide[1] = 0.0  # one frame of the batch without a guide: the two scales there
        a = ref.predict(grey, pad_to=4, guide=guide, second_scale=second_scale)
        b = ov.predict(grey, pad_to=4, guide=guide, second_scale=second_scale)
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
    a2 = Colorizer(net, "cpu", "fp32", backend="torch").predict(grey, pad_to=4, second_scale=2.0)
    b2 = c.predict(grey, pad_to=4, second_scale=2.0)
    assert np.abs(a2 - b2).mean() * 110 < 0.5  # the same bound with the second scale


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


def test_bf16_chroma_gain_from_the_weights(tmp_path) -> None:
    """The shipped file carries its bf16 colour gain; bf16 output is scaled by it (hints spread
    after), f32 and torch are not; an implausible gain is a one-line WeightsError."""
    from vidcolor.errors import WeightsError
    from vidcolor.model import save_generator

    if not openvino_net.cpu_has_bf16():
        pytest.skip("this CPU has no native bf16")
    path = JobConfig().weights_path
    net, meta = load_generator(path)
    assert 0.9 < meta["bf16_chroma_gain"] < 1.1  # measured at export: 1.0358
    grey = np.random.default_rng(2).random((2, 144, 192), np.float32)
    shipped = Colorizer.from_file(path, "cpu", "bf16", backend="openvino")
    raw = Colorizer(net, "cpu", "bf16", backend="openvino")
    assert shipped.bf16_gain == meta["bf16_chroma_gain"] and raw.bf16_gain == 1.0
    np.testing.assert_allclose(shipped.predict(grey, pad_to=2), raw.predict(grey, pad_to=2) * shipped.bf16_gain,
                               rtol=1e-6, atol=1e-7)
    f32 = Colorizer.from_file(path, "cpu", "fp32", backend="openvino")
    np.testing.assert_array_equal(f32.predict(grey, pad_to=2), Colorizer(net, "cpu", "fp32", backend="openvino")
                                  .predict(grey, pad_to=2))
    bad = tmp_path / "bad.pt"
    save_generator(net, bad, {**meta, "bf16_chroma_gain": 7.0})
    with pytest.raises(WeightsError, match="implausible bf16_chroma_gain"):
        Colorizer.from_file(bad, "cpu", "bf16", backend="openvino")


def test_export_calibrates_bf16(tmp_path, tiny_guided_weights) -> None:
    """`vidcolor export --calibrate PHOTOS` measures f32's chroma over bf16's on the photos and
    stores it; the raw networks' outputs bear it out."""
    import cv2

    from vidcolor.cli import main
    from vidcolor.model import bf16_chroma_gain, calibration_photos

    if not openvino_net.cpu_has_bf16():
        pytest.skip("this CPU has no native bf16")
    rng = np.random.default_rng(3)
    photos = tmp_path / "photos" / "sub"
    photos.mkdir(parents=True)
    for i in range(3):
        img = cv2.GaussianBlur(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8), (9, 9), 3)
        cv2.imwrite(str(photos / f"p{i}.png"), img)
    (photos / "notes.txt").write_text("not a photo")
    picked = calibration_photos(tmp_path / "photos")
    assert [p.name for p in picked] == ["p0.png", "p1.png", "p2.png"]
    out = tmp_path / "cal.pt"
    assert main(["export", str(tiny_guided_weights), "--fp16", "--calibrate", str(tmp_path / "photos"),
                 "-o", str(out)]) == 0
    net, meta = load_generator(out)
    gain = meta["bf16_chroma_gain"]
    assert 0.5 < gain < 2.0
    assert gain == pytest.approx(bf16_chroma_gain(net, picked), abs=1e-5)
    assert main(["export", str(tiny_guided_weights), "--calibrate", str(tmp_path / "none"),
                 "-o", str(tmp_path / "x.pt")]) != 0
    assert not (tmp_path / "x.pt").exists()

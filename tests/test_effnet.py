"""The generator on an ImageNet-trained encoder: the weights load and still recognise things,
checkpoints rebuild the architecture, a frame's colour does not depend on its batch, and the
decoder-only phase leaves the encoder untouched."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import SHARED

from vidcolor.config import JobConfig, TrainConfig, load_config
from vidcolor.data import PhotoBatches
from vidcolor.efficientnet import INPUT_MEAN, INPUT_STD, EfficientNetLite0, imagenet_state_dict
from vidcolor.errors import ConfigError
from vidcolor.match import FeatureNet, carry, make_reference
from vidcolor.model import Colorizer, EffUnetGenerator, GeneratorConfig, load_generator, save_generator
from vidcolor.train import add_matched_guides, encoder_weights, train

CATS_DOGS = SHARED / "train" / "cats_dogs"
IMAGENET_CATS_DOGS = range(151, 286)  # dog breeds 151-268, cats 281-285 (and wolves/foxes between)


@pytest.mark.skipif(not CATS_DOGS.is_dir(), reason="needs ../shared/data/train/cats_dogs")
def test_imagenet_weights_load_strictly_and_recognise_cats_and_dogs() -> None:
    net = EfficientNetLite0(with_head=True)
    net.load_state_dict(imagenet_state_dict(), strict=True)
    net.eval()
    files = sorted(CATS_DOGS.iterdir())[:20]
    imgs = [cv2.resize(cv2.imread(str(f))[..., ::-1], (224, 224)).astype(np.float32) / 255 for f in files]
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2)
    grey = (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:]).expand(-1, 3, -1, -1)
    with torch.no_grad():
        for inp, need in ((x, 17), (grey, 15)):  # measured: 39/40 colour, 38/40 grey on a larger sample
            pred = net((inp - INPUT_MEAN) / INPUT_STD).argmax(1)
            assert sum(int(p) in IMAGENET_CATS_DOGS for p in pred) >= need


def _net(guide: bool) -> EffUnetGenerator:
    torch.manual_seed(0)
    net = EffUnetGenerator(GeneratorConfig(arch="effnet_unet", ngf=4, num_downs=5, guide=guide))
    net.encoder.load_state_dict(encoder_weights())
    with torch.no_grad():
        net.head.weight.normal_(0.0, 0.05)
    return net.eval()


@pytest.mark.parametrize("int8", [False, True])
def test_checkpoint_rebuilds_the_architecture(tmp_path: Path, int8: bool) -> None:
    net = _net(guide=True)
    path = tmp_path / "g.pt"
    save_generator(net, path, {"steps": 1}, int8=int8)
    loaded, meta = load_generator(path)
    assert isinstance(loaded, EffUnetGenerator) and loaded.cfg == net.cfg and meta["steps"] == 1
    x = torch.rand(2, 1, 64, 96) * 2 - 1
    g = torch.zeros(2, 3, 64, 96)
    g[:, :, 10:20, 10:20] = torch.tensor([0.3, -0.2, 1.0])[:, None, None]
    with torch.no_grad():
        a, b = net(x, g), loaded(x, g)
    assert a.shape == (2, 2, 64, 96)
    # fp16 kernels: under 0.6 ab units; int8 kernels: under 1.1 on average (what that costs a
    # trained model is measured with `vidcolor eval`, see the model card)
    err = (a - b).abs()
    assert err.max() < 5e-3 if not int8 else err.mean() < 0.01
    with torch.no_grad():
        assert (net(x, g) - net(x, None)).abs().max() > 1e-4  # the guide reaches the output


@pytest.mark.parametrize("backend", ["torch", "openvino"])
def test_colour_does_not_depend_on_the_batch(tmp_path: Path, backend: str) -> None:
    c = Colorizer(_net(guide=True), "cpu", "auto", backend=backend)
    if backend == "torch":
        assert c.precision == "fp32"  # bf16 slows depthwise convolutions in torch on CPU (measured)
    rng = np.random.default_rng(0)
    grey = rng.random((5, 72, 120), dtype=np.float32)
    guide = np.zeros((5, 72, 120, 3), np.float32)
    guide[2, 30:40, 50:60] = (0.2, 0.1, 1.0)
    alone = c.predict(grey[2:3], pad_to=4, guide=guide[2:3])
    together = c.predict(grey[:4], pad_to=4, guide=guide[:4])
    assert np.array_equal(alone[0], together[2])
    assert alone.shape == (1, 72, 120, 2)


def test_second_scale_averages_the_enlarged_frame_where_there_is_no_guide() -> None:
    """`second_scale`: an unguided frame's colour is the mean of the network at the working size
    and at twice it (brought back by area averaging); a guided frame keeps the one-scale guided
    result, and the batch does not matter."""
    c = Colorizer(_net(guide=True), "cpu", "fp32", backend="torch")
    rng = np.random.default_rng(1)
    grey = cv2.GaussianBlur(rng.random((3, 72, 120), dtype=np.float32).transpose(1, 2, 0), (0, 0), 2).transpose(2, 0, 1)
    grey = np.ascontiguousarray(grey)
    guide = np.zeros((3, 72, 120, 3), np.float32)
    guide[1, 30:40, 50:60] = (0.2, 0.1, 1.0)
    one = c.predict(grey, pad_to=4)
    big = np.stack([cv2.resize(g, (240, 144), interpolation=cv2.INTER_LINEAR) for g in grey])
    two = c.predict(big, pad_to=4)
    want = 0.5 * (one + np.stack([cv2.resize(a, (120, 72), interpolation=cv2.INTER_AREA) for a in two]))
    got = c.predict(grey, pad_to=4, second_scale=2.0)
    assert np.abs(got - want).max() < 1e-6
    assert np.abs(got - one).mean() > 1e-3  # the enlarged view does change the colour
    guided = c.predict(grey, pad_to=4, guide=guide, second_scale=2.0)
    assert np.array_equal(guided[1], c.predict(grey, pad_to=4, guide=guide)[1])
    assert np.abs(guided[[0, 2]] - want[[0, 2]]).max() < 1e-6
    assert np.array_equal(c.predict(grey[2:3], pad_to=4, second_scale=2.0)[0], got[2])
    with pytest.raises(ConfigError, match="second_scale"):
        load_config(JobConfig, None, {"second_scale": 0.5})


def _recipe(tmp_path: Path, **overrides: object) -> TrainConfig:
    """A tiny effnet_unet recipe on a few generated photos."""
    photos = tmp_path / "photos"
    photos.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(6):
        cv2.imwrite(str(photos / f"p{i}.png"), cv2.GaussianBlur(rng.integers(0, 256, (40, 52, 3), np.uint8), (0, 0), 3))
    base = {"data": [str(photos)], "out_dir": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache"),
            "photo_side": 36, "crop": 32, "batch_size": 2, "steps": 2, "nogan_steps": 10, "arch": "effnet_unet",
            "ngf": 4, "num_downs": 5, "ndf": 4, "guide": True, "log_every": 1, "checkpoint_every": 1,
            "snapshot_every": 100, "threads": 1, "precision": "fp32"}
    return load_config(TrainConfig, None, {**base, **overrides})


def test_decoder_only_phase_then_whole_net(tmp_path: Path) -> None:
    # Matched guides too: their encoder pass (a padded batch) must not move BatchNorm's statistics.
    cfg = _recipe(tmp_path, freeze_encoder_steps=2, ema=0.0, guide_matched=1.0)
    start = encoder_weights()
    train(cfg)
    frozen, _ = load_generator(tmp_path / "run" / "generator_latest.pt")
    enc = frozen.encoder.state_dict()
    # fp16 export: the ImageNet weights survive the decoder-only phase (to fp16 rounding)
    assert all(torch.allclose(enc[k].float(), v.float(), atol=2e-3, rtol=1e-3) for k, v in start.items())
    train(dataclasses.replace(cfg, steps=4))  # resumes at step 2; the encoder now trains
    whole, _ = load_generator(tmp_path / "run" / "generator_latest.pt")
    moved = max((whole.encoder.state_dict()[k].float() - v.float()).abs().max().item()
                for k, v in start.items() if v.is_floating_point() and "running" not in k)
    assert moved > 1e-3


def test_training_with_matched_guides_runs_and_resumes(tmp_path: Path) -> None:
    cfg = _recipe(tmp_path, guide_matched=0.5, matched_other=0.5, steps=2)
    train(cfg)
    train(dataclasses.replace(cfg, steps=3))
    assert len((tmp_path / "run" / "log.csv").read_text().splitlines()) == 4
    with pytest.raises(ConfigError):
        _recipe(tmp_path, guide=False, guide_matched=0.5)


def test_training_matches_a_batch_as_the_pipeline_matches_each_frame() -> None:
    """add_matched_guides matches the whole batch at once on the generator's device; each
    sample's guide must be what the pipeline's make_reference + carry give that frame and
    reference (keyframe and reference-photo gates, another photo as reference, a flow part)."""
    net, _ = load_generator(JobConfig().weights_path)
    features = FeatureNet(net).eval()
    rng = np.random.default_rng(1)
    photos = np.stack([cv2.resize(cv2.GaussianBlur(rng.integers(0, 256, (18, 18, 3), np.uint8), (0, 0), 1.2),
                                  (144, 144)) for _ in range(3)])
    batches = PhotoBatches(photos, 128, 12, 0.0, seed=3, guide=(0.3, 0.3), matched=(0.6, 0.4))
    x, _ab, guides, refs = next(iter(batches))
    batches.close()
    assert refs is not None and guides is not None
    assert 1 < len(refs.index) < 12  # some samples matched, some not
    refs.strict = [j % 2 == 0 for j in range(len(refs.index))]  # both gates
    got = add_matched_guides(features, torch.from_numpy(x), torch.from_numpy(guides), refs).numpy()
    want = guides.copy()
    with torch.no_grad():
        for j, k in enumerate(refs.index):
            f = features(torch.from_numpy(np.stack([x[k], refs.x[j]]))).numpy()
            ref_guide = np.concatenate([refs.ab[j].transpose(1, 2, 0), np.ones((128, 128, 1), np.float32)], 2)
            carried = carry(f[0], (0, 0), make_reference(f[1], (0, 0), ref_guide), (128, 128), strict=refs.strict[j])
            want[k] += (1.0 - want[k, 2:3]) * carried.transpose(2, 0, 1)
    assert np.abs(got - want).max() < 1e-4
    assert not np.allclose(got, guides)  # the matching did add colour


def test_gan_phase_runs_on_the_encoder_generator(tmp_path: Path) -> None:
    train(_recipe(tmp_path, steps=3, nogan_steps=1, checkpoint_every=3))
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()[1:]
    g_gan = [float(r.split(",")[4]) for r in rows]
    assert g_gan[0] == 0.0 and all(v > 0 for v in g_gan[1:])  # the discriminator joins after step 1


def test_matched_guides_carry_the_references_colour() -> None:
    """Training's feature-matched guides, built as the pipeline builds them: a reference equal to
    the frame carries the frame's own colour with near-full confidence (keyframe and reference
    gates alike); a flow part already in the guide keeps its place."""
    net, _ = load_generator(JobConfig().weights_path)  # the shipped model: features that mean something
    rng = np.random.default_rng(0)
    photo = cv2.resize(cv2.GaussianBlur(rng.integers(0, 256, (24, 24, 3), np.uint8), (0, 0), 1.5), (144, 144))
    batches = PhotoBatches(photo[None].repeat(2, 0), 128, 4, 0.0, seed=0, guide=(0.0, 0.0), matched=(1.0, 0.0))
    x, ab, guides, refs = next(iter(batches))
    batches.close()
    assert refs is not None and refs.index == [0, 1, 2, 3] and refs.x.shape == (4, 1, 128, 128)
    refs.x, refs.ab = x.copy(), ab.copy()  # each frame its own reference
    before = guides[:, 2].copy()
    guides = add_matched_guides(FeatureNet(net), torch.from_numpy(x), torch.from_numpy(guides), refs).numpy()
    conf = guides[:, 2]
    assert conf.min() >= 0 and conf.max() <= 1 + 1e-6
    assert (conf >= before - 1e-6).all()  # matching fills what the flow part leaves open
    open_ = before == 0
    assert open_.mean() > 0.3
    assert conf[open_].mean() > 0.95
    carried = guides[:, :2] / np.maximum(conf, 1e-6)[:, None]
    truth = np.stack([cv2.blur(a.transpose(1, 2, 0), (9, 9)).transpose(2, 0, 1) for a in ab])
    err = np.abs(carried - truth).transpose(1, 0, 2, 3)[:, open_]
    assert err.mean() * 110 < 4.0  # Lab units: the frame's own colours, at the matching grid's detail


def test_colour_class_head_trains_beside_the_generator_and_is_not_exported(tmp_path: Path) -> None:
    """lambda_ab_class: the head's cross-entropy reaches the generator's features, the head is
    checkpointed and resumed with the run, and the exported generator is the plain network."""
    from vidcolor.train import AB_CLASS_BINS, AbClassHead

    cfg = _recipe(tmp_path, lambda_ab_class=1.0, steps=2, ema=0.9)
    train(cfg)
    st2 = torch.load(tmp_path / "run" / "state.pt", weights_only=False)
    train(dataclasses.replace(cfg, steps=3))  # resumes: the head's weights come back with the run
    st3 = torch.load(tmp_path / "run" / "state.pt", weights_only=False)
    assert st3["aux"]["conv.weight"].shape[0] == AB_CLASS_BINS ** 2
    assert not torch.equal(st2["aux"]["conv.weight"], st3["aux"]["conv.weight"])
    net, _ = load_generator(tmp_path / "run" / "generator_latest.pt")
    assert set(net.state_dict()) == set(EffUnetGenerator(net.cfg).state_dict())
    with pytest.raises(ConfigError, match="lambda_ab_class"):
        _recipe(tmp_path, lambda_ab_class=1.0, arch="unet", num_downs=5, guide=False)

    # On one batch, gradient steps through the generator's features lower the class loss; a true
    # colour in a bin's centre is that bin's class.
    torch.manual_seed(0)
    g = EffUnetGenerator(GeneratorConfig(arch="effnet_unet", ngf=4, num_downs=5))
    head = AbClassHead(g.head.in_channels)
    g.head.register_forward_hook(head.keep)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    y = torch.full((2, 2, 32, 32), 0.0)
    y[:, 0] = -1.0 + 2.0 * (3.5 / AB_CLASS_BINS)  # a: the centre of bin 3; b: bin 11
    opt = torch.optim.Adam([*g.parameters(), *head.parameters()], 5e-2)
    losses = []
    for _ in range(40):
        g(x)
        loss = head.loss(y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    head.attached = False  # warm-up: the head learns, the generator's weights get no gradient from it
    opt.zero_grad()
    g(x)
    head.loss(y).backward()
    assert head.conv.weight.grad.abs().sum() > 0
    assert all(p.grad is None or not p.grad.any() for p in g.parameters())
    g(x)
    logits = head.conv(head.features)
    assert int(logits.argmax(1).flatten().mode().values) == 3 * AB_CLASS_BINS + AB_CLASS_BINS // 2

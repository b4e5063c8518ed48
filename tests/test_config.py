"""configs/default.toml documents every option with its default."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from vidcolor.config import JobConfig, load_config

ROOT = Path(__file__).resolve().parents[1]


def test_default_toml_equals_defaults_and_lists_every_option() -> None:
    path = ROOT / "configs" / "default.toml"
    assert load_config(JobConfig, path) == JobConfig()
    keys = set(re.findall(r"^(\w+)\s*=", path.read_text(), re.M))
    assert keys == {f.name for f in dataclasses.fields(JobConfig)}


def test_training_recipes_load() -> None:
    from vidcolor.config import TrainConfig
    from vidcolor.model import load_generator

    recipes = sorted((ROOT / "configs").glob("train_*.toml"))
    assert len(recipes) >= 2
    for path in recipes:
        cfg = load_config(TrainConfig, path)
        assert cfg.crop % (1 << cfg.num_downs) == 0
        if cfg.init_generator:  # a recipe continuing the shipped model must match its architecture
            net, meta = load_generator(ROOT / cfg.init_generator)
            want = (cfg.arch, cfg.ngf, cfg.num_downs, cfg.guide)
            assert (net.cfg.arch, net.cfg.ngf, net.cfg.num_downs, net.cfg.guide) == want, path.name
            assert cfg.start_step == meta["steps"] < cfg.steps, path.name  # credits the steps it had

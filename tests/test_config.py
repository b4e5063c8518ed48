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


def test_training_recipe_loads() -> None:
    from vidcolor.config import TrainConfig

    cfg = load_config(TrainConfig, ROOT / "configs" / "train_cpu.toml")
    assert cfg.crop % (1 << cfg.num_downs) == 0

"""Batches: a folder in, a folder out, resumable as a whole."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import decode_all, make_clip

from vidcolor.batch import colorize_many
from vidcolor.errors import ConfigError


def test_folder_batch_and_rerun_skips_finished(tmp_path: Path, tiny_weights: Path) -> None:
    src = tmp_path / "reels"
    src.mkdir()
    make_clip(src / "a.mp4", frames=8, audio_tracks=1)
    make_clip(src / "b.mkv", frames=6)
    (src / "notes.txt").write_text("not a video, not listed")
    out = tmp_path / "color"
    opts = {"weights": str(tiny_weights), "working_size": 64, "preset": "ultrafast"}
    res = colorize_many([src], output=None, out_dir=out, config=None, overrides=opts, progress=False, workers=0)
    assert sorted(r.output.name for r in res) == ["a_color.mp4", "b_color.mkv"]
    assert len(decode_all(out / "a_color.mp4")) == 8 and len(decode_all(out / "b_color.mkv")) == 6
    (out / "b_color.mkv").unlink()
    again = colorize_many([src], output=None, out_dir=out, config=None, overrides=opts, progress=False, workers=0)
    assert [r.output.name for r in again] == ["b_color.mkv"]  # a was finished: skipped


def test_single_output_needs_single_input(tmp_path: Path, tiny_weights: Path) -> None:
    with pytest.raises(ConfigError, match="--out-dir"):
        colorize_many([tmp_path], output=tmp_path / "x.mp4", out_dir=None, config=None, overrides={}, workers=0)

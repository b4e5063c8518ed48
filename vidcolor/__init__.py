"""vidcolor: colorize black-and-white video.

`colorize` and `JobResult` are imported lazily, so the model and training modules work on a
machine without PyAV or Ray (a bare GPU box used for a training burst).
"""

from typing import Any

from .errors import VidcolorError

__all__ = ["JobResult", "VidcolorError", "colorize"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("colorize", "JobResult"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'vidcolor' has no attribute {name!r}")

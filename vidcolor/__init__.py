"""vidcolor: colorize black-and-white video."""

from .errors import VidcolorError
from .pipeline import JobResult, colorize

__all__ = ["JobResult", "VidcolorError", "colorize"]
__version__ = "0.1.0"

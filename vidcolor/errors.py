"""The project's exceptions. Only the CLI turns them into exit codes and one-line messages."""

from __future__ import annotations


class VidcolorError(Exception):
    """Base class: every error vidcolor raises on purpose."""

    exit_code = 1


class BadInputError(VidcolorError):
    """The input file cannot be used: missing, not a video, damaged beyond reading."""

    exit_code = 2


class ConfigError(VidcolorError):
    """A bad option, config file or combination of them."""

    exit_code = 3


class WeightsError(VidcolorError):
    """Model weights missing, truncated or not matching the expected architecture."""

    exit_code = 4


class OutputError(VidcolorError):
    """The output cannot be written (disk full, permissions, would overwrite the input)."""

    exit_code = 5


class ResumeError(VidcolorError):
    """A job's saved state does not match the job being run (input, config or model changed)."""

    exit_code = 6


class Interrupted(VidcolorError):  # noqa: N818 - reads as "vidcolor was interrupted"
    """The user stopped the job; what was finished is kept."""

    exit_code = 130

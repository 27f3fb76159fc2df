"""Errors that reach the user as one clear line (the CLI prints them without a traceback)."""


class ReverieError(Exception):
    """Base class: the message names the problem and what to do about it."""


class ModelLoadError(ReverieError):
    """A model path is missing, unreadable, or its weights do not match its config."""


class InputError(ReverieError):
    """User input is empty, too large, or otherwise unusable."""


class DataUnavailable(ReverieError):
    """Real passages cannot be had from here: the package index cannot be reached, or does
    not offer the archive they come from."""

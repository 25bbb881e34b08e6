"""Errors the suite raises on bad input; each message names the key or file and the fix."""


class MixerError(Exception):
    """Base class: the CLI prints these as one line and exits with status 2."""


class ConfigError(MixerError):
    """A config value is unknown, of the wrong type, or inconsistent."""


class DatasetError(MixerError):
    """A dataset file is missing, corrupt, or does not match its metadata."""


class GenerationError(MixerError):
    """A dataset could not be generated (e.g. no admissible initial condition found)."""


class ModelFileError(MixerError):
    """A model or checkpoint file is missing, unreadable or not one the suite wrote."""

"""Errors a user can cause. The CLI turns each into one line on stderr and exit code 2."""


class HarnessError(Exception):
    """A problem with the user's input: a config, a file, a model reference."""


class ConfigError(HarnessError):
    """A config file or option that does not validate."""


class DataError(HarnessError):
    """A dataset that cannot be read or yields no usable examples."""


class ModelError(HarnessError):
    """A model or adapter reference that cannot be loaded or does not fit."""

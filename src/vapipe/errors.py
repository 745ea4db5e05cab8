"""Errors about a user's input: their message names the file or config key at fault."""


class InputError(ValueError):
    """Bad input (a data file, a config key); reported as one line, not a traceback."""


class ConfigError(InputError):
    """The config is inconsistent or has an unknown key; the message names the key's path."""

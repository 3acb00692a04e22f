"""One exception family: the CLI prints these as `error: ...` and exits 2, with no traceback."""


class XRobustError(Exception):
    """A user-facing error: the message names the file, key or line and what was expected."""


class ConfigError(XRobustError):
    pass


class DataError(XRobustError):
    pass


class CheckpointError(XRobustError):
    pass


class LaunchError(XRobustError):
    pass

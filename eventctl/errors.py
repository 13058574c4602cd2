"""The errors eventctl raises on purpose, each with a name a caller can catch.

The HTTP layer maps them to problem details in one place (``api/problems.py``) and the CLI maps client
errors to exit codes in one place (``cli/main.py``).
"""


class EventctlError(Exception):
    """Base class of every error eventctl raises on purpose."""


class ConfigError(EventctlError):
    """A setting has a value eventctl cannot use; the message names the environment variable."""


class StoreUnavailable(EventctlError):
    """The store cannot answer right now (database down, disk full, locked); retrying later may succeed."""


class PermanentError(EventctlError):
    """Raised by a handler to fail an event at once: retrying it cannot succeed."""

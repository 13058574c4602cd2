"""The client's defaults, in a module that imports nothing, so that the CLI can show them in ``--help``
without loading the client."""

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_RETRIES = 3
DEFAULT_BATCH_SIZE = 500

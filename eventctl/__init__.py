"""eventctl: durable event ingestion over HTTP, with a worker and a CLI in one package."""

from eventctl.errors import PermanentError
from eventctl.handlers import Delivery

__version__ = "0.1.0"

__all__ = ["Delivery", "PermanentError", "__version__"]

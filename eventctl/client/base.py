"""What ``Client`` and ``AsyncClient`` share: their settings, checked once (the calls are ``protocol``'s flows)."""

from __future__ import annotations

import httpx

from eventctl import __version__
from eventctl.client import many, protocol
from eventctl.client.defaults import DEFAULT_RETRIES, DEFAULT_TIMEOUT_SECONDS
from eventctl.client.protocol import (
    Answer,
    Context,
)
from eventctl.client.retries import RetryPolicy

USER_AGENT = f"eventctl-client/{__version__}"


class ClientBase:
    """The settings of a client; subclasses run ``protocol``'s flows over their transport.

    ``url`` is the service's base URL (``http://`` or ``https://``; a path is kept, for a service behind a
    prefix). ``api_key`` is sent as a Bearer token. ``timeout`` bounds each request, in seconds. ``retries``
    is how often a connection failure, a timeout, a 429 or a 503 is retried, or a ``RetryPolicy``.
    Raises ``InvalidServiceURL`` for a URL that cannot be used.
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        retries: int | RetryPolicy = DEFAULT_RETRIES,
    ) -> None:
        self.url = protocol.check_url(url)
        self.headers = {"User-Agent": USER_AGENT}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.timeout = timeout
        self._context = Context(self.url, timeout, RetryPolicy.of(retries))
        self._batch = many.BatchSupport()

    def _answer_of(self, response: httpx.Response) -> Answer:
        return Answer(response.status_code, response.headers, response.content)

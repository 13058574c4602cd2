"""What the console reads from requests: url-encoded form bodies, and the §11 filters of a query or a form
(parsed by ``eventctl.filters``, the one parser), kept as given so that links and forms can carry them on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import parse_qs, urlencode

from starlette.requests import Request

from eventctl.filters import FILTER_PARAMETERS

MAX_FORM_BYTES = 256 * 1024  # a dead-letters page of ids, with room to spare


class FormTooLarge(ValueError):
    pass


async def read_form(request: Request) -> dict[str, list[str]]:
    """The url-encoded body of a POST, each name with every value given (at most ``MAX_FORM_BYTES``)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormTooLarge(f"the form is larger than {MAX_FORM_BYTES} bytes")
    return parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)


def query_lists(request: Request) -> dict[str, list[str]]:
    return {name: request.query_params.getlist(name) for name in request.query_params}


def given_filters(values: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """The filter parameters among ``values``, blank ones left out (an empty form field means "any")."""
    given = {name: [v for v in values.get(name, ()) if v.strip()] for name in FILTER_PARAMETERS}
    return {name: found for name, found in given.items() if found}


def first(values: Mapping[str, Sequence[str]], name: str) -> str | None:
    found = values.get(name)
    return found[0] if found else None


def query_string(filters: Mapping[str, Sequence[str]], **extra: str | int | None) -> str:
    """``filters`` and ``extra`` (``None`` left out) as a query string, without the ``?``."""
    pairs = [(name, value) for name, found in filters.items() for value in found]
    pairs += [(name, str(value)) for name, value in extra.items() if value is not None]
    return urlencode(pairs)

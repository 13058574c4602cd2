"""Every setting of ``eventctl serve``, read once from the environment and command-line options.

``SETTINGS`` is the single table the README, ``eventctl serve --help`` and the parser agree on. Options
override environment variables; a bad value raises ``ConfigError`` with one line naming the variable.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from eventctl.auth import ApiKey, parse_api_keys
from eventctl.durations import parse_duration
from eventctl.errors import ConfigError
from eventctl.ratelimit import RateLimit
from eventctl.store import check_database_url

Env = Literal["dev", "staging", "prod"]
LogFormat = Literal["console", "json"]


@dataclass(frozen=True, slots=True)
class Settings:
    """What one ``eventctl serve`` process runs with. Built by ``Settings.load``; never mutated."""

    host: str = "127.0.0.1"
    port: int = 8080
    env: Env = "dev"
    database_url: str = "sqlite:///eventctl.db"
    handler: str = "sleep"
    processing_delay_ms: int = 1000
    webhook_url: str | None = None
    webhook_secret: str | None = dataclasses.field(default=None, repr=False)
    webhook_timeout_s: float = 10.0
    worker_concurrency: int = 256
    max_attempts: int = 5
    retry_backoff_ms: int = 1000
    retry_backoff_max_ms: int = 300_000
    lease_seconds: float = 30.0
    shutdown_timeout_s: float = 10.0
    max_body_bytes: int = 1_048_576
    max_backlog: int = 1_000_000  # events waiting or running; 0: no limit
    max_batch_events: int = 1000  # items of one POST /events/batch
    api_keys: tuple[ApiKey, ...] = ()
    api_keys_file: tuple[ApiKey, ...] = ()  # read from the file at load
    rate_limit: RateLimit | None = None
    forwarded_allow_ips: tuple[str, ...] | None = None  # proxies whose X-Forwarded-For is believed; None: none
    retention: float = 7 * 86_400.0  # seconds; 0 keeps processed events forever
    attempt_history: str = "on"  # "off": no attempt is recorded
    log_level: str = "info"
    log_format: LogFormat | None = None  # None: console in dev, json in staging and prod

    @property
    def keys(self) -> tuple[ApiKey, ...]:
        """Every configured key, from API_KEYS and API_KEYS_FILE; empty means the API is open."""
        return self.api_keys + self.api_keys_file

    @property
    def effective_log_format(self) -> LogFormat:
        if self.log_format is not None:
            return self.log_format
        return "console" if self.env == "dev" else "json"

    @classmethod
    def load(cls, environ: Mapping[str, str], options: Mapping[str, str | None] | None = None) -> Settings:
        """Settings from ``environ`` with ``options`` (keyed by field name) taking precedence."""
        options = options or {}
        values: dict[str, Any] = {}
        for spec in SETTINGS:
            raw = options.get(spec.field)
            if raw is None:
                raw = environ.get(spec.env)
            if raw is None or raw == "":
                continue
            try:
                values[spec.field] = spec.parse(raw)
            except ValueError as exc:
                # A secret never reaches a log, even when wrong; nor does the password of a URL.
                shown = "" if spec.secret else f"={_without_password(raw)!r}"
                raise ConfigError(f"invalid {spec.env}{shown}: {exc}") from None
        settings = cls(**values)
        settings._check_consistency()
        return settings

    def _check_consistency(self) -> None:
        if self.env != "dev" and not self.keys:
            raise ConfigError(f"invalid ENV={self.env}: staging and prod need API_KEYS (or API_KEYS_FILE)")
        if self.handler == "webhook" and not (self.webhook_url and self.webhook_secret):
            raise ConfigError("invalid HANDLER=webhook: WEBHOOK_URL and WEBHOOK_SECRET must both be set")
        if self.retry_backoff_max_ms < self.retry_backoff_ms:
            raise ConfigError(
                f"invalid RETRY_BACKOFF_MAX_MS={self.retry_backoff_max_ms}: "
                f"it must not be below RETRY_BACKOFF_MS={self.retry_backoff_ms}"
            )


def _without_password(raw: str) -> str:
    try:
        password = urlsplit(raw).password
    except ValueError:  # not a URL at all
        return raw
    return raw.replace(f":{password}@", ":***@") if password else raw


def _integer(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"expected a whole number from {low} to {high}") from None
        if not low <= value <= high:
            raise ValueError(f"expected a whole number from {low} to {high}")
        return value

    return parse


def _seconds(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"expected a number of seconds from {low:g} to {high:g}") from None
        if not low <= value <= high:
            raise ValueError(f"expected a number of seconds from {low:g} to {high:g}")
        return value

    return parse


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return value

    return parse


def _text(raw: str) -> str:
    value = raw.strip()
    if not value or any(c.isspace() for c in value):
        raise ValueError("expected a value without spaces")
    return value


def _database_url(raw: str) -> str:
    return check_database_url(_text(raw))


def _handler(raw: str) -> str:
    value = raw.strip()
    if value in ("sleep", "webhook") or re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", value):
        return value
    raise ValueError("expected sleep, webhook, or package.module:function")


def _http_url(raw: str) -> str:
    value = raw.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected an http:// or https:// URL")
    return value


def _webhook_secret(raw: str) -> str:
    value = raw.strip()
    encoded = value.removeprefix("whsec_")
    try:
        if len(base64.b64decode(encoded + "==", validate=True)) < 16:
            raise ValueError
    except (ValueError, binascii.Error):
        raise ValueError("expected whsec_ followed by at least 16 base64-encoded random bytes") from None
    return value


def _api_keys_file(raw: str) -> tuple[ApiKey, ...]:
    try:
        with open(raw.strip(), encoding="utf-8") as file:
            text = file.read()
    except OSError as exc:
        raise ValueError(f"cannot read it: {exc.strerror}") from None
    return parse_api_keys(text)


def _proxies(raw: str) -> tuple[str, ...]:
    """Addresses and networks as uvicorn's ``forwarded_allow_ips`` reads them, or ``*`` alone. uvicorn takes
    an entry it cannot read for a name that no client address ever matches; here it is refused instead."""
    entries = tuple(entry.strip() for entry in raw.split(","))
    if entries == ("*",):
        return entries
    for entry in entries:
        try:
            if "/" in entry:
                ipaddress.ip_network(entry)
            else:
                ipaddress.ip_address(entry)
        except ValueError:
            raise ValueError(
                f"{entry!r} is not an IP address or network; expected addresses and networks (10.0.0.0/8), "
                "comma-separated, or * alone"
            ) from None
    return entries


@dataclass(frozen=True, slots=True)
class SettingSpec:
    """How one setting is named, parsed and explained."""

    env: str
    parse: Callable[[str], Any]
    help: str
    shown_default: str | None = None  # how the default reads in help and README, where str() would mislead
    secret: bool = False  # its value is never shown, not even in an error

    @property
    def field(self) -> str:
        return self.env.lower()

    @property
    def option(self) -> str:
        return "--" + self.env.lower().replace("_", "-")

    @property
    def default(self) -> str:
        if self.shown_default is not None:
            return self.shown_default
        value = _DEFAULTS[self.field]
        if value is None:
            return "unset"
        return f"{value:g}" if isinstance(value, float) else str(value)


SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("HOST", _text, "Address to listen on (0.0.0.0 for all interfaces)."),
    SettingSpec("PORT", _integer(0, 65535), "HTTP port; 0 picks a free one and logs it."),
    SettingSpec("ENV", _choice("dev", "staging", "prod"), "Deployment environment: dev, staging or prod."),
    SettingSpec(
        "DATABASE_URL",
        _database_url,
        "Store: sqlite:///path.db, postgresql://user@host/db, or memory:// (kept in memory only).",
    ),
    SettingSpec("HANDLER", _handler, "What processing is: sleep, webhook, or package.module:function."),
    SettingSpec("PROCESSING_DELAY_MS", _integer(0, 3_600_000), "How long the sleep handler works on an event."),
    SettingSpec("WEBHOOK_URL", _http_url, "Where the webhook handler POSTs each event."),
    SettingSpec("WEBHOOK_SECRET", _webhook_secret, "Standard Webhooks signing secret (whsec_...).", secret=True),
    SettingSpec("WEBHOOK_TIMEOUT_S", _seconds(0.1, 600), "How long the webhook handler waits for an answer."),
    SettingSpec("WORKER_CONCURRENCY", _integer(1, 10_000), "Events processed at once by this process."),
    SettingSpec("MAX_ATTEMPTS", _integer(1, 1000), "Attempts before an event is failed (dead-lettered)."),
    SettingSpec("RETRY_BACKOFF_MS", _integer(0, 86_400_000), "Base of the exponential retry backoff."),
    SettingSpec("RETRY_BACKOFF_MAX_MS", _integer(0, 86_400_000), "Cap of the retry backoff."),
    SettingSpec("LEASE_SECONDS", _seconds(1, 86_400), "How long a claim lasts unless its worker renews it."),
    SettingSpec("SHUTDOWN_TIMEOUT_S", _seconds(0, 3600), "Grace for running handlers on SIGTERM or SIGINT."),
    SettingSpec("MAX_BODY_BYTES", _integer(64, 1 << 30), "Largest accepted request body (413 above it)."),
    SettingSpec("MAX_BATCH_EVENTS", _integer(1, 100_000), "Most events in one POST /events/batch (400 above it)."),
    SettingSpec(
        "MAX_BACKLOG", _integer(0, 1 << 40), "Events waiting or running past which new events get 503; 0: none."
    ),
    SettingSpec("RETENTION", parse_duration, "How long processed events are kept (e.g. 7d, 12h); 0 keeps them.", "7d"),
    SettingSpec("ATTEMPT_HISTORY", _choice("on", "off"), "Record every attempt of every event (off: none)."),
    SettingSpec("API_KEYS", parse_api_keys, "key:scope+scope entries, comma-separated.", "unset", secret=True),
    SettingSpec(
        "API_KEYS_FILE", _api_keys_file, "A file of API_KEYS entries, one a line (for mounted secrets).", "unset"
    ),
    SettingSpec("RATE_LIMIT", RateLimit.parse, "Per key (or client address when open), e.g. 200/s,burst=400.", "unset"),
    SettingSpec(
        "FORWARDED_ALLOW_IPS",
        _proxies,
        "Proxies whose X-Forwarded-For/-Proto are believed: addresses, networks, or *. Unset: none.",
    ),
    SettingSpec("LOG_LEVEL", _choice("debug", "info", "warning", "error"), "Least severe level logged."),
    SettingSpec(
        "LOG_FORMAT", _choice("console", "json"), "console (default in dev) or json (staging, prod).", "by ENV"
    ),
)

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Settings)}
assert {spec.field for spec in SETTINGS} == set(_DEFAULTS), "SETTINGS and Settings disagree"

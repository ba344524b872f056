"""Settings of the mediation service: defaults, then a TOML file, then MEDIATION_* variables.

One `Settings` object is built at start-up by `load_settings()` and passed to whoever needs
it; nothing reads the environment or a global later. `Settings` validates itself, so a bad
value fails at start-up with one line that names the setting and where the value came from:

    setting ring_timeout_s: must be a number > 0 (got 'abc' from MEDIATION_RING_TIMEOUT_S)

Secrets are wrapped in `Secret`, whose repr and str never show the value.
"""

from __future__ import annotations

import dataclasses
import difflib
import hmac
import ipaddress
import logging
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

ENV_PREFIX = "MEDIATION_"
CONFIG_ENV_VAR = "MEDIATION_CONFIG"

_UNSET: Any = object()
_MASK = "********"


class ConfigError(Exception):
    """A setting has a bad value, or the configuration cannot be read.

    `setting` is the field name (or "config" for the file itself), `problem` what is wrong,
    `got` the offending value as written by the operator, `source` where it came from
    ("default", the TOML file path, an environment variable name).
    """

    def __init__(
        self, setting: str, problem: str, *, got: Any = _UNSET, source: str | None = None
    ) -> None:
        self.setting = setting
        self.problem = problem
        self.got = got
        self.source = source
        message = f"setting {setting}: {problem}"
        if got is not _UNSET and source is not None:
            message += f" (got {_show(got)} from {source})"
        elif got is not _UNSET:
            message += f" (got {_show(got)})"
        elif source is not None:
            message += f" (from {source})"
        super().__init__(" ".join(message.splitlines()))


class Secret:
    """A string that is never shown: repr() and str() give '********'; reveal() gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str = "") -> None:
        if not isinstance(value, str):
            raise TypeError(f"Secret wraps a str, not {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"'{_MASK}'" if self._value else "Secret(<empty>)"

    def __str__(self) -> str:
        return _MASK if self._value else ""

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))


@dataclass(frozen=True)
class Settings:
    """Every setting of the service; see docs/configuration.md for the operator's view."""

    # Address to listen on.
    host: str = "127.0.0.1"
    # TCP port to listen on; 0 picks a free port (tests).
    port: int = 8080
    # Directory holding metadata.sqlite3 and objects/ (relative paths: to the working dir).
    data_dir: Path = Path("data")
    # Public origin, e.g. "https://mediation.example.org"; empty: derive from the request.
    public_origin: str = ""
    # Extra origins allowed (Origin header, CORS) besides the service's own.
    allowed_origins: tuple[str, ...] = ()
    # PEM certificate chain for HTTPS; set together with tls_key_file, or neither.
    tls_cert_file: Path | None = None
    # PEM private key for HTTPS; set together with tls_cert_file, or neither.
    tls_key_file: Path | None = None
    # IPs/CIDR networks whose X-Forwarded-Proto / X-Forwarded-Host headers are believed.
    trusted_proxies: tuple[str, ...] = ()
    # "text" (readable, development) or "json" (one JSON object a line, production).
    log_format: Literal["text", "json"] = "text"
    # Logging level name (DEBUG, INFO, WARNING, ERROR, CRITICAL); any case, stored upper.
    log_level: str = "INFO"
    # Prefix of case numbers: the 6-digit district code.
    district_code: str = "000000"
    # How long one expert is rung before the next is tried; also how long a caller has
    # to choose "wait" or "anyone" when their named expert is not free.
    ring_timeout_s: float = 30.0
    # Time from launch (or from going back to the queue) until the duty pool may answer.
    overflow_timeout_s: float = 120.0
    # Longest a call may wait unanswered before it ends as no_answer.
    max_wait_s: float = 900.0
    # How long a dropped participant keeps their place to rejoin.
    rejoin_grace_s: float = 60.0
    # Time a new WebSocket has to authenticate before it is closed.
    auth_timeout_s: float = 5.0
    # WebSocket heartbeat interval; a silent socket is closed after heartbeat_s * 1.5.
    heartbeat_s: float = 5.0
    # Most participants in one call (at least 6: mediator, two parties, counsel, interpreter).
    max_participants: int = 8
    # Messages queued for one connection before a slow client is cut off.
    send_queue_max: int = 256
    # Messages a connection may send per second (token bucket rate).
    rate_limit_per_s: float = 20.0
    # Messages a connection may send in a burst (token bucket size).
    rate_limit_burst: int = 40
    # Refused messages in a row before the connection is closed.
    rate_limit_close_after: int = 50
    # Largest WebSocket message accepted, in bytes.
    max_message_bytes: int = 65536
    # Lifetime of a login session.
    session_ttl_s: float = 43200.0
    # Longest a graceful shutdown may take before the rest is cut off.
    shutdown_timeout_s: float = 10.0
    # How often live connections are re-checked against disabled accounts/devices.
    principal_recheck_s: float = 5.0
    # How long a device enrolment code (8 digits, one-time) stays valid.
    enrolment_code_ttl_s: float = 600.0
    # Failed enrolment attempts one client IP may make per minute; more answer 429.
    enrolment_failures_per_min: int = 10
    # Failed logins one client IP may make per minute; more answer 429 for a while.
    login_failures_per_min: int = 10
    # Failed logins (and wrong old passwords) to one account, from anywhere, per 15 minutes;
    # more answer 429.
    login_failures_per_account: int = 20
    # Create demo accounts on first start (turn off in production).
    demo_accounts: bool = True
    # Video codec of every call: "vp8" or "h264" (fixed when the call becomes active).
    video_codec: Literal["vp8", "h264"] = "vp8"
    # Video one participant may receive in all, kbit/s; each publisher is capped at a share.
    max_video_kbps: int = 1500
    # No RTP and no RTCP from a participant for this long: dropped (reason media_timeout).
    media_inactivity_s: float = 5.0
    # Packets queued for one subscriber that cannot keep up, before video is dropped.
    media_queue_packets: int = 512
    # UDP ports the server's media sockets bind in, "FIRST-LAST" (e.g. "40000-40999"); empty: any.
    media_udp_ports: str = ""
    # Addresses the media sockets bind on (e.g. the media NIC's); empty: every interface.
    media_interfaces: tuple[str, ...] = ()
    # Public IPv4 address to advertise in ICE candidates (server behind a 1:1 NAT); empty: none.
    media_public_ip: str = ""
    # STUN/TURN URLs handed to clients (e.g. "turn:turn.example.org:3478"); empty: none.
    ice_urls: tuple[str, ...] = ()
    # Shared secret of the TURN REST scheme (coturn use-auth-secret); empty: no TURN credentials.
    turn_secret: Secret = Secret("")
    # Lifetime of the TURN credentials handed out over signaling.
    turn_credential_ttl_s: float = 3600.0
    # Recording: target segment length; a segment is cut at the first key frame after it.
    recording_segment_s: float = 10.0
    # Kiosk call launched without recording consent: "refuse" (no call) or "unrecorded".
    # Station calls always need consent and are always recorded.
    kiosk_without_consent: Literal["refuse", "unrecorded"] = "refuse"
    # Days every evidence object is retained (Object Lock retention / local store lock).
    retention_days: int = 365
    # "GOVERNANCE" (an admin with bypass rights may lift it) or "COMPLIANCE" (nobody can).
    retention_mode: Literal["GOVERNANCE", "COMPLIANCE"] = "GOVERNANCE"
    # Packets buffered for the recorder per published track; past it, a gap is recorded.
    recorder_tap_packets: int = 2048
    # Oldest spooled file waiting longer than this: upload lag warning.
    upload_lag_warn_s: float = 300.0
    # The uploader lets files committed together gather this long before it sends them, so
    # its thread wakes once for a burst (a call's end does not wait: its files go at once).
    upload_gather_s: float = 5.0
    # Free space under the spool below this many MiB: disk warning.
    spool_min_free_mb: int = 1024
    # Recorder: S3 endpoint host[:port]; empty: local object store in data_dir/objects.
    s3_endpoint: str = ""
    # Recorder: S3 access key id.
    s3_access_key: str = ""
    # Recorder: S3 secret key; never shown in repr, str or logs.
    s3_secret_key: Secret = Secret("")
    # Recorder: S3 bucket (created with Object Lock if missing).
    s3_bucket: str = "mediation"
    # Recorder: S3 region; empty: the server's default.
    s3_region: str = ""
    # Recorder: use HTTPS to reach the S3 endpoint.
    s3_secure: bool = True
    # PEM CA bundle that signs the S3 endpoint's certificate; empty: the system's CAs.
    s3_ca_file: Path | None = None
    # Seconds a connection to S3 may take to open; a silent endpoint fails each attempt then.
    s3_connect_timeout_s: float = 5.0
    # Seconds S3 may stay silent during a request (each read of an answer).
    s3_read_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        _validate(self)
        object.__setattr__(self, "log_level", self.log_level.upper())

    @property
    def db_path(self) -> Path:
        return self.data_dir / "metadata.sqlite3"

    @property
    def objects_dir(self) -> Path:
        return self.data_dir / "objects"

    @property
    def spool_dir(self) -> Path:
        """Closed segments and chain links waiting for a verified upload."""
        return self.data_dir / "spool"

    @property
    def recording_dir(self) -> Path:
        """Recordings in progress: open segments and each call's chain."""
        return self.data_dir / "recording"

    @property
    def keys_dir(self) -> Path:
        """The evidence signing keys (private keys mode 0600)."""
        return self.data_dir / "keys"

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert_file is not None and self.tls_key_file is not None

    def replace(self, **changes: Any) -> Settings:
        """A copy with `changes` applied, validated like any other Settings."""
        try:
            return dataclasses.replace(self, **changes)
        except ConfigError as err:
            if err.setting not in changes:
                raise
            raise ConfigError(
                err.setting, err.problem, got=err.got, source="Settings.replace()"
            ) from None


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Defaults, then the TOML file at `path` (or $MEDIATION_CONFIG), then MEDIATION_* vars.

    Raises ConfigError naming the setting and the source of the bad value.
    """
    if env is None:
        env = os.environ
    values: dict[str, Any] = {}
    # Per overridden setting: the value as the operator wrote it, and where.
    written: dict[str, tuple[Any, str]] = {}

    if path is not None:
        _read_file(Path(path), "--config", values, written)
    elif env.get(CONFIG_ENV_VAR):
        _read_file(Path(env[CONFIG_ENV_VAR]), CONFIG_ENV_VAR, values, written)
    _read_env(env, values, written)

    try:
        return Settings(**values)
    except ConfigError as err:
        got, source = written.get(err.setting, (err.got, "default"))
        raise ConfigError(err.setting, err.problem, got=got, source=source) from None


# --- reading the sources -----------------------------------------------------------------


def _read_file(
    path: Path, named_by: str, values: dict[str, Any], written: dict[str, tuple[Any, str]]
) -> None:
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except OSError as err:
        raise ConfigError(
            "config", f"cannot read the file: {err.strerror or err}", got=str(path), source=named_by
        ) from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(
            "config", f"not a valid TOML file: {err}", got=str(path), source=named_by
        ) from err

    source = str(path)
    for name, raw in data.items():
        if name not in _KINDS:
            raise ConfigError(name, _unknown(name, _KINDS), source=source)
        values[name] = _from_toml(_KINDS[name], raw)
        written[name] = (_masked(name, raw), source)


def _read_env(
    env: Mapping[str, str], values: dict[str, Any], written: dict[str, tuple[Any, str]]
) -> None:
    known = {ENV_PREFIX + name.upper(): name for name in _KINDS}
    for var, raw in env.items():
        if not var.startswith(ENV_PREFIX) or var == CONFIG_ENV_VAR:
            continue
        name = known.get(var)
        if name is None:
            setting = var.removeprefix(ENV_PREFIX).lower()
            raise ConfigError(setting, _unknown(var, known), source=var)
        try:
            values[name] = _from_env(_KINDS[name], raw)
        except ValueError:
            raise ConfigError(name, _RULES[name][0], got=_masked(name, raw), source=var) from None
        written[name] = (_masked(name, raw), var)


def _unknown(name: str, known: Mapping[str, object]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"unknown setting (did you mean {close[0]}?)" if close else "unknown setting"


def _masked(name: str, raw: Any) -> Any:
    return Secret(_MASK) if _KINDS[name] == "secret" else raw


# Field kinds drive conversion of TOML values and environment strings.
_Kind = Literal["bool", "int", "float", "str", "path", "optional_path", "strings", "secret"]


def _kind_of(hint: Any) -> _Kind:
    if hint is bool:
        return "bool"
    if hint is int:
        return "int"
    if hint is float:
        return "float"
    if hint is str or get_origin(hint) is Literal:
        return "str"
    if hint is Path:
        return "path"
    if hint is Secret:
        return "secret"
    if set(get_args(hint)) == {Path, type(None)}:
        return "optional_path"
    if get_origin(hint) is tuple and get_args(hint) == (str, ...):
        return "strings"
    raise TypeError(f"no conversion for settings of type {hint!r}")


def _from_toml(kind: _Kind, raw: Any) -> Any:
    """Shape a TOML value into the field's type where the shapes agree; the rest fails later."""
    if kind == "float" and isinstance(raw, int) and not isinstance(raw, bool):
        return float(raw)
    if kind == "strings" and isinstance(raw, list):
        return tuple(raw)
    if kind == "path" and isinstance(raw, str) and raw:
        return Path(raw)
    if kind == "optional_path" and isinstance(raw, str):
        return Path(raw) if raw else None
    if kind == "secret" and isinstance(raw, str):
        return Secret(raw)
    return raw


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _from_env(kind: _Kind, raw: str) -> Any:
    """Convert an environment string to the field's type; ValueError when it cannot."""
    if kind == "bool":
        word = raw.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError(raw)
    if kind == "int":
        return int(raw.strip())
    if kind == "float":
        return float(raw.strip())
    if kind == "path":
        if not raw:
            raise ValueError(raw)
        return Path(raw)
    if kind == "optional_path":
        return Path(raw) if raw else None
    if kind == "strings":
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    if kind == "secret":
        return Secret(raw)
    return raw


# --- validation --------------------------------------------------------------------------

_LOG_LEVELS = frozenset(logging.getLevelNamesMapping()) - {"NOTSET"}
_ORIGIN = re.compile(
    r"https?://(?:[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\])(?::(\d{1,5}))?"
)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


def _is_origin(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    match = _ORIGIN.fullmatch(value)
    return match is not None and (match[1] is None or 1 <= int(match[1]) <= 65535)


def _is_network(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True


def _is_strings(value: Any, each: Callable[[Any], bool]) -> bool:
    return isinstance(value, tuple) and all(isinstance(v, str) and each(v) for v in value)


def _string(value: Any) -> bool:
    return isinstance(value, str)


def _positive(value: Any) -> bool:
    return _is_number(value) and value > 0


def _at_least(minimum: int) -> Callable[[Any], bool]:
    return lambda value: _is_int(value) and value >= minimum


def _optional_path(value: Any) -> bool:
    return value is None or isinstance(value, Path)


_POSITIVE = "must be a number > 0"
_ORIGIN_FORM = "like https://host[:port] (http or https, lower case, no path or trailing slash)"
_BOOL = "must be true or false (environment also accepts 1/0, yes/no, on/off)"

# Per setting: what it must be (the whole message) and the check.
_RULES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "host": (
        "must be a host name or IP address",
        lambda v: isinstance(v, str) and v != "" and not any(c.isspace() for c in v),
    ),
    "port": (
        "must be an integer from 0 to 65535 (0 picks a free port)",
        lambda v: _is_int(v) and 0 <= v <= 65535,
    ),
    "data_dir": ("must be a non-empty path", lambda v: isinstance(v, Path)),
    "public_origin": (
        f"must be empty or an origin {_ORIGIN_FORM}",
        lambda v: v == "" or _is_origin(v),
    ),
    "allowed_origins": (
        f"must be a list of origins {_ORIGIN_FORM}",
        lambda v: _is_strings(v, _is_origin),
    ),
    "tls_cert_file": ("must be a file path", _optional_path),
    "tls_key_file": ("must be a file path", _optional_path),
    "trusted_proxies": (
        "must be a list of IP addresses or CIDR networks (e.g. 10.0.0.0/8)",
        lambda v: _is_strings(v, _is_network),
    ),
    "log_format": ("must be 'text' or 'json'", lambda v: v in ("text", "json")),
    "log_level": (
        "must be a logging level name (DEBUG, INFO, WARNING, ERROR or CRITICAL)",
        lambda v: isinstance(v, str) and v.upper() in _LOG_LEVELS,
    ),
    "district_code": (
        'must be exactly 6 digits, written as a string (e.g. "012345")',
        lambda v: isinstance(v, str) and re.fullmatch(r"[0-9]{6}", v) is not None,
    ),
    "ring_timeout_s": (_POSITIVE, _positive),
    "overflow_timeout_s": (_POSITIVE, _positive),
    "max_wait_s": (_POSITIVE, _positive),
    "rejoin_grace_s": (_POSITIVE, _positive),
    "auth_timeout_s": (_POSITIVE, _positive),
    "heartbeat_s": (_POSITIVE, _positive),
    "max_participants": ("must be an integer >= 6", _at_least(6)),
    "send_queue_max": ("must be an integer >= 1", _at_least(1)),
    "rate_limit_per_s": (_POSITIVE, _positive),
    "rate_limit_burst": ("must be an integer >= 1", _at_least(1)),
    "rate_limit_close_after": ("must be an integer >= 1", _at_least(1)),
    "max_message_bytes": (
        "must be an integer from 1024 to 1048576",
        lambda v: _is_int(v) and 1024 <= v <= 1048576,
    ),
    "session_ttl_s": (_POSITIVE, _positive),
    "shutdown_timeout_s": (_POSITIVE, _positive),
    "principal_recheck_s": (_POSITIVE, _positive),
    "enrolment_code_ttl_s": (_POSITIVE, _positive),
    "enrolment_failures_per_min": ("must be an integer >= 1", _at_least(1)),
    "login_failures_per_min": ("must be an integer >= 1", _at_least(1)),
    "login_failures_per_account": ("must be an integer >= 1", _at_least(1)),
    "demo_accounts": (_BOOL, lambda v: isinstance(v, bool)),
    "video_codec": ("must be 'vp8' or 'h264'", lambda v: v in ("vp8", "h264")),
    "max_video_kbps": ("must be an integer >= 100", _at_least(100)),
    "media_inactivity_s": (_POSITIVE, _positive),
    "media_queue_packets": ("must be an integer >= 8", _at_least(8)),
    "media_udp_ports": (
        'must be empty or "FIRST-LAST" with 1024 <= FIRST <= LAST <= 65535',
        lambda v: v == "" or _is_port_range(v),
    ),
    "media_interfaces": (
        "must be a list of IP addresses",
        lambda v: _is_strings(v, _is_ip),
    ),
    "media_public_ip": (
        "must be empty or an IPv4 address",
        lambda v: v == "" or _is_ipv4(v),
    ),
    "ice_urls": (
        "must be a list of stun:, turn: or turns: URLs",
        lambda v: _is_strings(
            v, lambda u: isinstance(u, str) and u.startswith(("stun:", "turn:", "turns:"))
        ),
    ),
    "turn_secret": ("must be a string", lambda v: isinstance(v, Secret)),
    "turn_credential_ttl_s": (_POSITIVE, _positive),
    "s3_endpoint": ("must be a string", _string),
    "s3_access_key": ("must be a string", _string),
    "s3_secret_key": ("must be a string", lambda v: isinstance(v, Secret)),
    "s3_bucket": ("must be a string", _string),
    "s3_region": ("must be a string", _string),
    "s3_secure": (_BOOL, lambda v: isinstance(v, bool)),
    "s3_ca_file": ("must be a file path", _optional_path),
    "s3_connect_timeout_s": (_POSITIVE, _positive),
    "s3_read_timeout_s": (_POSITIVE, _positive),
    "recording_segment_s": (
        "must be a number from 2 to 600",
        lambda v: _is_number(v) and 2 <= v <= 600,
    ),
    "kiosk_without_consent": (
        "must be 'refuse' or 'unrecorded'",
        lambda v: v in ("refuse", "unrecorded"),
    ),
    "retention_days": ("must be an integer >= 1", _at_least(1)),
    "retention_mode": (
        "must be 'GOVERNANCE' or 'COMPLIANCE'",
        lambda v: v in ("GOVERNANCE", "COMPLIANCE"),
    ),
    "recorder_tap_packets": ("must be an integer >= 64", _at_least(64)),
    "upload_lag_warn_s": (_POSITIVE, _positive),
    "upload_gather_s": ("must be a number >= 0", lambda v: _is_number(v) and v >= 0),
    "spool_min_free_mb": ("must be an integer >= 0", _at_least(0)),
}

_KINDS: dict[str, _Kind] = {name: _kind_of(hint) for name, hint in get_type_hints(Settings).items()}
if _KINDS.keys() != _RULES.keys():
    raise RuntimeError(f"settings without a rule: {_KINDS.keys() ^ _RULES.keys()}")


def _is_port_range(value: Any) -> bool:
    match = re.fullmatch(r"([0-9]{1,5})-([0-9]{1,5})", value) if isinstance(value, str) else None
    return match is not None and 1024 <= int(match[1]) <= int(match[2]) <= 65535


def _is_ip(value: Any) -> bool:
    try:
        return isinstance(value, str) and ipaddress.ip_address(value) is not None
    except ValueError:
        return False


def _is_ipv4(value: Any) -> bool:
    try:
        return isinstance(value, str) and ipaddress.ip_address(value).version == 4
    except ValueError:
        return False


def _validate(settings: Settings) -> None:
    for name, (rule, check) in _RULES.items():
        value = getattr(settings, name)
        if not check(value):
            raise ConfigError(name, rule, got=_masked(name, value))

    cert, key = settings.tls_cert_file, settings.tls_key_file
    if (cert is None) != (key is None):
        name, value, other = (
            ("tls_cert_file", cert, "tls_key_file")
            if cert is not None
            else ("tls_key_file", key, "tls_cert_file")
        )
        raise ConfigError(name, f"needs {other} as well; set both or neither", got=value)
    for name, value in (("tls_cert_file", cert), ("tls_key_file", key)):
        if value is not None and not value.is_file():
            raise ConfigError(name, "must be an existing file", got=value)


def _show(value: Any) -> str:
    """A value as it goes into an error message: one line, short, never a secret."""
    text = repr(str(value)) if isinstance(value, Path) else repr(value)
    return text if len(text) <= 120 else text[:117] + "..."

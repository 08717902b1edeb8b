"""How a setting is read: its variables, its parser and its one-line error.

Each field of a section is declared once with `knob(...)`: default, `FACEFLEET_*` variable,
InsightFace-REST aliases, parser and the sentence docs/configuration.md shows. Reading the
environment, the FACEFLEET_CONFIG file and writing the docs all walk these declarations, so
a knob cannot be read without being documented or documented without being read.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from facefleet.errors import ConfigError

PROVIDER_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
SHAPE_POLICIES = ("fixed", "fit")
# How a model's provider is chosen among those of the chain that work: the first, or the fastest measured.
PROVIDER_CHOICES = ("first", "fastest")
# When a camera's frame may use the engine beside HTTP (api/admission.py)
STREAM_SHARES = ("idle", "free-slot")
# Which decoder reads a camera (streams/decoders.py): the hardware when present, or never
STREAM_DECODERS = ("auto", "ffmpeg")
# The OpenVINO provider's `device_type`: a device (CPU, GPU, GPU.1, NPU) or a plugin over devices
# (AUTO:GPU,CPU, HETERO:GPU,CPU); which of them exist on the host only OpenVINO knows.
OPENVINO_DEVICE = re.compile(r"[A-Z]+(\.\d+)?(:[A-Z]+(\.\d+)?(,[A-Z]+(\.\d+)?)*)?")
# onnxruntime's CUDA provider values, by their lower-case spelling (what a user may type).
CONV_ALGO_SEARCHES = {name.lower(): name for name in ("HEURISTIC", "EXHAUSTIVE", "DEFAULT")}
ARENA_STRATEGIES = {name.lower(): name for name in ("kSameAsRequested", "kNextPowerOfTwo")}

T = TypeVar("T")


@dataclass(frozen=True)
class Knob:
    """What a field needs besides its type and default: where it is read from and what it means."""

    env: str
    aliases: tuple[str, ...]
    parse: Callable[[str], Any]
    doc: str
    shown: str | None = None  # the default as the docs say it, where the value alone would mislead

    @property
    def variables(self) -> tuple[str, ...]:
        """The FACEFLEET_ name first: it wins over an alias set beside it."""
        return (self.env, *self.aliases)


def knob(
    default: Any,
    env: str,
    *aliases: str,
    parse: Callable[[str], Any] = str,
    doc: str,
    shown: str | None = None,
    factory: Callable[[], Any] | None = None,
    secret: bool = False,
) -> Any:
    """A dataclass field carrying its Knob (returns `Any` so `port: int = knob(...)` type-checks)."""
    meta = {"knob": Knob(env, aliases, parse, doc, shown)}
    if factory is not None:
        return field(default_factory=factory, metadata=meta, repr=not secret)
    return field(default=default, metadata=meta, repr=not secret)


def knobs(section: type[Any]) -> dict[str, Knob]:
    """The section's fields by name, each with its Knob."""
    return {f.name: f.metadata["knob"] for f in dataclasses.fields(section)}


def read_variables(section: type[Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """The section's fields that `environ` sets (an empty variable is an unset one), parsed."""
    values: dict[str, Any] = {}
    for name, spec in knobs(section).items():
        for var in spec.variables:
            raw = environ.get(var)
            if raw is None or raw == "":
                continue
            try:
                values[name] = spec.parse(raw)
            except ValueError as exc:
                raise ConfigError(f"invalid {var}={raw!r}: {exc}") from None
            break
    return values


def read_config_file(path: str, by_key: Mapping[str, tuple[str, Knob]]) -> dict[str, Any]:
    """An optional YAML file of setting names (or their variables) to values; values are parsed
    exactly as environment values are, so one set of rules and error messages serves both.
    `by_key` maps each accepted key to the setting's flat name and Knob."""
    if not path:
        return {}
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read FACEFLEET_CONFIG={path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"FACEFLEET_CONFIG={path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"FACEFLEET_CONFIG={path} must be a mapping of settings to values")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        found = by_key.get(str(key))
        if found is None:
            raise ConfigError(f"FACEFLEET_CONFIG={path}: unknown setting {key!r}")
        name, spec = found
        try:
            values[name] = spec.parse(_as_text(value))
        except ValueError as exc:
            raise ConfigError(f"FACEFLEET_CONFIG={path}: invalid {key}={value!r}: {exc}") from None
    return values


def _as_text(value: object) -> str:
    """A YAML value as the environment would spell it: lists comma-joined, booleans lower-case."""
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "facefleet")


# ---------------------------------------------------------------- parsers: text -> value or ValueError
def parse_bool(text: str) -> bool:
    """The spellings pydantic's settings accept (InsightFace-REST's variables are read so): any case."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on", "t", "y"):
        return True
    if lowered in ("0", "false", "no", "off", "f", "n"):
        return False
    raise ValueError("expected true or false")


def parse_headers(text: str) -> tuple[tuple[str, str], ...]:
    """A JSON object of header names to values (InsightFace-REST's DEF_IMG_REQ_HEADERS), each checked
    as a request's `img_req_headers` are (facefleet.settings.env.check_headers)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError('expected a JSON object of header names to values, e.g. {"User-Agent": "..."}') from None
    return tuple(check_headers(value).items())


# Headers a caller may not set on an image download: they describe the connection or the body, which the
# fetcher owns (and Host would let a request ask one address for another site).
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "proxy-authorization",
        "proxy-connection",
    }
)
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")  # RFC 9110's token
HEADER_VALUE = re.compile(r"^[\t\x20-\x7e\x80-\xff]*$")  # what HTTP/1.1 carries (http.client sends Latin-1)
MAX_HEADERS, MAX_HEADER_BYTES = 32, 8192


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c}]" if c.isalpha() else c for c in word)  # letters and '-' only


# The same rules as JSON Schema states them (ECMA-262 regexes), for the OpenAPI document: a name that is a
# token and none of RESERVED_HEADERS in any case; a value without control characters but the tab.
HEADERS_SCHEMA = {
    "maxProperties": MAX_HEADERS,
    "propertyNames": {
        "pattern": "^" + "".join(f"(?!{_any_case(n)}$)" for n in sorted(RESERVED_HEADERS)) + HEADER_NAME.pattern[1:]
    },
    "additionalProperties": {"type": "string", "pattern": "^[\\t\\x20-\\x7e\\x80-\\xff]*$"},
}


def check_headers(value: object) -> dict[str, str]:
    """Header names to values for an image download, or ValueError saying what is wrong: at most 32, 8 KB in
    all, names that are HTTP tokens and none of RESERVED_HEADERS, values without control characters."""
    if not isinstance(value, dict):
        raise ValueError("expected an object of header names to values")
    if len(value) > MAX_HEADERS:
        raise ValueError(f"at most {MAX_HEADERS} headers")
    total = 0
    for name, text in value.items():
        if not isinstance(text, str):
            raise ValueError(f"header {str(name)[:40]!r}: the value must be a string")
        if not HEADER_NAME.match(name):
            raise ValueError(f"{name[:40]!r} is not a header name")
        if name.lower() in RESERVED_HEADERS:
            raise ValueError(f"header {name!r} is set by the downloader, not by a request")
        if not HEADER_VALUE.match(text):
            raise ValueError(
                f"header {name!r}: a value holds tabs, printable ASCII and Latin-1 letters only (no line break)"
            )
        total += len(name) + len(text)
    if total > MAX_HEADER_BYTES:
        raise ValueError(f"headers of {total} bytes: at most {MAX_HEADER_BYTES}")
    return dict(value)


def parse_providers(text: str) -> tuple[str, ...]:
    names = tuple(p.strip().lower() for p in text.split(",") if p.strip())
    unknown = [n for n in names if n not in PROVIDER_NAMES]
    if not names or unknown:
        raise ValueError(f"expected a comma-separated list of {', '.join(PROVIDER_NAMES)}")
    return names


def parse_openvino_device(text: str) -> str:
    """`cpu`, `GPU.0`, `AUTO:GPU,CPU`...: spelled as OpenVINO spells devices (upper case)."""
    device = text.strip().upper()
    if not OPENVINO_DEVICE.fullmatch(device):
        raise ValueError("expected an OpenVINO device such as CPU, GPU, GPU.1, NPU or AUTO:GPU,CPU")
    return device


def parse_size(text: str) -> tuple[int, int]:
    """`640,640`, `640x640`, `640` or InsightFace-REST's JSON list `[640, 640]`."""
    parts = [int(p) for p in text.strip().strip("[]").replace("x", ",").split(",")]
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 32 or any(p % 32 for p in parts):
        raise ValueError("expected WIDTH,HEIGHT, each a multiple of 32 (e.g. 640,640)")
    return parts[0], parts[1]


def one_of(choices: Mapping[str, str]) -> Callable[[str], str]:
    """A parser for one of a fixed set of spellings, case-insensitive, returned as `choices` spells it."""

    def parse(text: str) -> str:
        value = choices.get(text.strip().lower())
        if value is None:
            raise ValueError(f"expected one of {', '.join(choices.values())}")
        return value

    return parse


def exactly_one_of(*choices: str) -> Callable[[str], str]:
    """A parser for one of `choices`, spelled exactly."""

    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return text

    return parse


def bounded(convert: Callable[[str], T], check: Callable[[T], bool], message: str) -> Callable[[str], T]:
    """`convert`, then refuse a value `check` rejects with `message`."""

    def parse(text: str) -> T:
        value = convert(text)
        if not check(value):
            raise ValueError(message)
        return value

    return parse


positive_int = bounded(int, lambda v: v >= 1, "expected a whole number >= 1")
non_negative_int = bounded(int, lambda v: v >= 0, "expected a whole number >= 0")
unit_float = bounded(float, lambda v: 0.0 <= v <= 1.0, "expected a number from 0 to 1")
cosine = bounded(float, lambda v: -1.0 <= v <= 1.0, "expected a number from -1 to 1")
non_negative_float = bounded(float, lambda v: v >= 0, "expected a number >= 0")
# The dashboard's numbers (its own wording, kept from before the sections).
above_zero_int = bounded(int, lambda v: v > 0, "expected a number above 0")
above_zero_float = bounded(float, lambda v: v > 0, "expected a number above 0")


def word_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def path_list(text: str) -> tuple[str, ...]:
    paths = word_list(text)
    if any(not p.startswith("/") for p in paths):
        raise ValueError("expected a comma-separated list of paths, each starting with /")
    return paths


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def network_list(text: str) -> tuple[Network, ...]:
    """Comma-separated CIDRs, IPv4 or IPv6 (a bare address is its /32 or /128). An address with host bits
    set (`10.1.2.3/8`) is refused rather than widened: it is most often a typo for another network."""
    networks = []
    for part in word_list(text):
        try:
            networks.append(ipaddress.ip_network(part))
        except ValueError as exc:
            raise ValueError(f"{exc}{_did_you_mean(part)}; expected comma-separated CIDRs such as 10.0.0.0/8") from None
    return tuple(networks)


def _did_you_mean(part: str) -> str:
    """The network an address with host bits set lies in, to name in the error."""
    try:
        return f" (did you mean {ipaddress.ip_network(part, strict=False)}?)"
    except ValueError:
        return ""


def auth_mode(text: str) -> str:
    if text.strip().lower() not in ("on", "off"):
        raise ValueError("expected on or off")
    return text.strip().lower()


def log_format(text: str) -> str:
    if text not in ("text", "json"):
        raise ValueError("expected text or json")
    return text


def log_level(text: str) -> str:
    level = text.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError("expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


def key_lines(text: str) -> list[str]:
    """The keys of an API key file: one per line, blank lines and `#` comments skipped (the
    service reads it, and so does a dashboard running on an appliance)."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]

"""Typed, strict reading of stack config values.

Every reader names the full config key (``gpu-sharing:gpuNodes.maxSize``), the value
it received and what is allowed, so an error reads the same wherever it comes from.
``Section.done()`` rejects keys nobody read: a typo in ``Pulumi.<stack>.yaml`` is an
error, not a silently ignored setting.

Pulumi hands top-level scalars over as strings and structured values as JSON, and
``pulumi config set --path`` stores strings, so numbers and booleans are also
accepted in their unambiguous string form ("10", "true").
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from config.facts import RESERVED_NAMESPACES

__all__ = ["ConfigError", "Section", "SecretText", "MISSING"]


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING: Final = _Missing()

_INT_RE = re.compile(r"[+-]?\d+")
_DNS_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


class SecretText(str):
    """A secret config value: a ``str`` whose ``repr`` hides it, so errors never print it."""

    def __repr__(self) -> str:
        return "'[secret]'"


class ConfigError(ValueError):
    """A stack config value is missing, malformed or out of range."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        self.key = key
        self.value = value
        self.allowed = allowed
        got = "nothing (the key is required)" if value is MISSING else repr(value)
        super().__init__(f"stack config {key}: got {got}; allowed: {allowed}")


class Section:
    """A config object (a mapping) read key by key, remembering which keys were read."""

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(path, data, "an object (a YAML mapping)")
        self._data: Mapping[str, Any] = data
        self._path = path
        self._read: set[str] = set()
        self._known: set[str] = set()  # keys asked about with has(): optional keys of this section

    @property
    def path(self) -> str:
        return self._path

    def key(self, name: str) -> str:
        """The full config key of ``name`` in this section."""
        sep = "" if self._path.endswith(":") else "."
        return f"{self._path}{sep}{name}" if self._path else name

    def has(self, name: str) -> bool:
        """Whether ``name`` is set; asking makes it a key this section knows (for ``done``)."""
        self._known.add(name)
        return name in self._data

    def keys(self) -> list[str]:
        return list(self._data)

    def raw(self, name: str, default: Any = MISSING) -> Any:
        self._read.add(name)
        value = self._data.get(name, MISSING)
        if value is MISSING or value is None:
            if default is MISSING:
                raise ConfigError(self.key(name), MISSING, "a value")
            return default
        return value

    # --- scalars -------------------------------------------------------------------

    def str(
        self,
        name: str,
        default: Any = MISSING,
        *,
        choices: Iterable[str] | None = None,
        pattern: re.Pattern[str] | None = None,
        what: str = "a non-empty string",
    ) -> str:
        value = self.raw(name, default)
        allowed = what
        if choices is not None:
            choices = list(choices)
            allowed = "one of " + ", ".join(repr(c) for c in choices)
        if not isinstance(value, str) or not value:
            raise ConfigError(self.key(name), value, allowed)
        if choices is not None and value not in choices:
            raise ConfigError(self.key(name), value, allowed)
        if pattern is not None and not pattern.fullmatch(value):
            raise ConfigError(self.key(name), value, allowed)
        return value

    def dns_label(self, name: str, default: Any = MISSING) -> str:
        """A Kubernetes name (RFC 1123 label): lowercase alphanumerics and '-', at most 63."""
        value = self.str(
            name,
            default,
            pattern=_DNS_LABEL_RE,
            what="a DNS label: lowercase letters, digits and '-', starting and ending alphanumeric",
        )
        if len(value) > 63:
            raise ConfigError(self.key(name), value, "a DNS label of at most 63 characters")
        return value

    def namespace(self, name: str, default: Any = MISSING) -> str:
        """A namespace this stack declares: a DNS label that is not one every cluster already has."""
        value = self.dns_label(name, default)
        if value in RESERVED_NAMESPACES or value.startswith("kube-"):
            raise ConfigError(
                self.key(name),
                value,
                "a namespace of this stack's own, not one every cluster has ("
                + ", ".join(RESERVED_NAMESPACES)
                + ") nor another 'kube-' name (reserved for Kubernetes)",
            )
        return value

    def int(
        self, name: str, default: Any = MISSING, *, min: int | None = None, max: int | None = None
    ) -> int:
        value = self.raw(name, default)
        allowed = _range_text("an integer", min, max)
        number: int
        if isinstance(value, bool):
            raise ConfigError(self.key(name), value, allowed)
        if isinstance(value, int):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, str) and _INT_RE.fullmatch(value.strip()):
            number = int(value)
        else:
            raise ConfigError(self.key(name), value, allowed)
        if (min is not None and number < min) or (max is not None and number > max):
            raise ConfigError(self.key(name), value, allowed)
        return number

    def float(
        self,
        name: str,
        default: Any = MISSING,
        *,
        min: float | None = None,
        max: float | None = None,
        min_exclusive: bool = False,
    ) -> float:
        value = self.raw(name, default)
        lower = f"greater than {min}" if min_exclusive else (f"at least {min}" if min is not None else "")
        allowed = "a number" + (f" {lower}" if lower else "") + (f" and at most {max}" if max is not None else "")
        number: float
        if isinstance(value, bool):
            raise ConfigError(self.key(name), value, allowed)
        if isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                raise ConfigError(self.key(name), value, allowed) from None
        else:
            raise ConfigError(self.key(name), value, allowed)
        if number != number or (  # NaN
            min is not None and (number <= min if min_exclusive else number < min)
        ) or (max is not None and number > max):
            raise ConfigError(self.key(name), value, allowed)
        return number

    def bool(self, name: str, default: Any = MISSING) -> bool:
        value = self.raw(name, default)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(self.key(name), value, "true or false")

    # --- structures ----------------------------------------------------------------

    def section(self, name: str, default: Any = MISSING) -> Section:
        return Section(self.raw(name, default), self.key(name))

    def str_list(
        self, name: str, default: Any = MISSING, *, min_items: int = 0, what: str = "a string"
    ) -> tuple[str, ...]:
        value = self.raw(name, default)
        allowed = f"a list of at least {min_items} item(s), each {what}"
        if not isinstance(value, list) or len(value) < min_items:
            raise ConfigError(self.key(name), value, allowed)
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item:
                raise ConfigError(f"{self.key(name)}[{i}]", item, what)
        return tuple(value)

    def cidr_list(self, name: str, default: Any = MISSING, *, min_items: int = 0) -> tuple[str, ...]:
        items = self.str_list(name, default, min_items=min_items, what="an IPv4 CIDR such as 203.0.113.0/24")
        for i, item in enumerate(items):
            check_cidr(f"{self.key(name)}[{i}]", item)
        return items

    def cidr(self, name: str, default: Any = MISSING) -> str:
        value = self.str(name, default, what="an IPv4 CIDR such as 10.0.0.0/16")
        check_cidr(self.key(name), value)
        return value

    def str_map(self, name: str, default: Any = MISSING) -> dict[str, str]:
        value = self.raw(name, default)
        if not isinstance(value, Mapping):
            raise ConfigError(self.key(name), value, "a mapping of strings to strings")
        out: dict[str, str] = {}
        for k, v in value.items():
            if not isinstance(v, str) or not isinstance(k, str) or not k:
                raise ConfigError(f"{self.key(name)}.{k}", v, "a string")
            out[k] = v
        return out

    def done(self) -> None:
        """Refuse keys that were never read: they are typos or settings we do not have."""
        unknown = [k for k in self._data if k not in self._read]
        if unknown:
            known = sorted(self._read | self._known)
            raise ConfigError(
                self.key(unknown[0]),
                self._data[unknown[0]],
                "no such key here; known keys: " + ", ".join(known),
            )


def check_cidr(key: str, value: str) -> None:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError:
        raise ConfigError(key, value, "an IPv4 CIDR with no host bits set, such as 10.0.0.0/16") from None
    if net.version != 4 or "/" not in value:
        raise ConfigError(key, value, "an IPv4 CIDR with an explicit prefix length, such as 10.0.0.0/16")


def _range_text(what: str, min: int | None, max: int | None) -> str:
    if min is not None and max is not None:
        return f"{what} from {min} to {max}"
    if min is not None:
        return f"{what} of at least {min}"
    if max is not None:
        return f"{what} of at most {max}"
    return what

"""Typed, frozen settings records read from ``SHOPSENSE_*`` environment variables.

A settings class lists only what its reader uses. Each field is declared with
:func:`option`: its variable, its default (a value, or a function of the fields declared
before it, such as a database path derived from the state folder), its meaning with its
unit, and a check. ``load()`` reads the environment once and refuses a malformed or
out-of-range value naming the variable; ``describe()`` tells, for every setting, its value,
its default and where the value came from (what ``shopsense config`` prints).

``{SERVICE}`` in a variable's name stands for the class's ``NAME`` in capitals, so the
common base of the services declares ``SHOPSENSE_{SERVICE}_LISTEN`` once for all six.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

# A default computed from the settings read so far (by field name) and the class.
Derive = Callable[[Mapping[str, Any], type], Any]
# Why a value is refused ("must be >= 1"), or None when it is fine.
Check = Callable[[Any], str | None]

ENVIRONMENT, DEFAULT, GIVEN = "environment", "default", "given"


@dataclass(frozen=True)
class Option:
    """How one setting is read: see :func:`option`."""

    env: str
    default: Any
    doc: str
    parse: Callable[[str], Any] = str
    check: Check | None = None
    secret: bool = False
    # The field a derived default is computed from ("" when the default is a value).
    derived_from: str = ""


def option(
    env: str,
    default: Any,
    doc: str,
    *,
    parse: Callable[[str], Any] = str,
    check: Check | None = None,
    secret: bool = False,
    derived_from: str = "",
) -> Any:
    """A settings field read from ``env``; ``default`` may be a :data:`Derive` function."""
    return dataclasses.field(
        metadata={"option": Option(env, default, doc, parse, check, secret, derived_from)}
    )


def integer(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"expected an integer, got {raw!r}") from None


def number(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"expected a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {raw!r}")
    return value


def at_least(low: float) -> Check:
    return lambda value: None if value >= low else f"must be >= {low:g} (got {value:g})"


def between(low: float, high: float) -> Check:
    return lambda value: (
        None if low <= value <= high else f"must be between {low:g} and {high:g} (got {value:g})"
    )


def one_of(*choices: str) -> Check:
    return lambda value: (
        None if value in choices else f"one of {', '.join(choices)} (got {value!r})"
    )


def address(value: str) -> str | None:
    """A ``host:port`` (a gRPC target may also be a ``scheme:`` URI such as ``dns:///x:1``)."""
    host, _, port = value.rpartition(":")
    if not host or not (port.isascii() and port.isdigit()):
        return f"expected host:port (got {value!r})"
    return None


@dataclass(frozen=True)
class Described:
    """One setting as ``shopsense config`` shows it."""

    name: str
    env: str
    value: Any
    default: Any
    source: str
    doc: str
    secret: bool = False


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Base of every settings record; subclasses declare fields with :func:`option`."""

    # Who reads these settings ("gateway", ...): ``{SERVICE}`` in variable names.
    NAME: ClassVar[str] = ""

    @classmethod
    def options(cls) -> list[tuple[str, Option]]:
        """``(field name, option)`` in declaration order."""
        return [(f.name, f.metadata["option"]) for f in dataclasses.fields(cls)]

    @classmethod
    def env_name(cls, opt: Option) -> str:
        return opt.env.replace("{SERVICE}", cls.NAME.upper())

    @classmethod
    def _resolve(
        cls, environ: Mapping[str, str] | None, given: Mapping[str, Any]
    ) -> list[Described]:
        environ = os.environ if environ is None else environ
        unknown = set(given) - {name for name, _ in cls.options()}
        if unknown:
            raise TypeError(f"{cls.__name__}: no setting {sorted(unknown)[0]!r}")
        values: dict[str, Any] = {}
        rows = []
        for name, opt in cls.options():
            env = cls.env_name(opt)
            default = opt.default(values, cls) if callable(opt.default) else opt.default
            raw = environ.get(env)
            if name in given:
                value, source = given[name], GIVEN
            elif raw is not None and raw != "":
                try:
                    value = opt.parse(raw)
                except ValueError as exc:
                    raise ValueError(f"{env}: {exc}") from None
                source = ENVIRONMENT
            else:
                value = default
                source = (
                    f"derived from {cls._env_of(opt.derived_from)}" if opt.derived_from else DEFAULT
                )
            if opt.check is not None and value is not None:
                problem = opt.check(value)
                if problem is not None:
                    raise ValueError(f"{env}: {problem}")
            values[name] = value
            rows.append(Described(name, env, value, default, source, opt.doc, opt.secret))
        return rows

    @classmethod
    def _env_of(cls, name: str) -> str:
        return next(cls.env_name(opt) for field, opt in cls.options() if field == name)

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **given: Any) -> Self:
        """The settings from ``environ`` (default: this process's environment); ``given``
        values (tests) win over both the environment and the defaults, and derived
        defaults follow them. ValueError names the variable of a malformed value."""
        return cls(**{row.name: row.value for row in cls._resolve(environ, given)})

    @classmethod
    def describe(cls, environ: Mapping[str, str] | None = None) -> list[Described]:
        """Every setting with its value, default and source, in declaration order."""
        return cls._resolve(environ, {})


def path(raw: str) -> Path:
    return Path(raw).expanduser()


# The decorator of every settings class: frozen, keyword-only fields (so a subclass may add
# fields after its base's).
record = dataclasses.dataclass(frozen=True, kw_only=True)

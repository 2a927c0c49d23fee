"""`shopsense config [SERVICE]`: every setting of a service (or of all), with its value, its
default and where the value came from (the environment, the default, or derived from
another setting such as the state folder), read as the service itself would read them."""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

from rich.console import Console
from rich.table import Table

from shared.settings import ALL, Described

HIDDEN = "(hidden)"
# The password of a URL (postgresql+psycopg://user:password@host/db): never printed.
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]+(?P<tail>@)", re.I)


def masked(value: Any) -> Any:
    """``value`` with any URL's password replaced by ***."""
    if isinstance(value, str):
        return _URL_PASSWORD.sub(r"\g<head>***\g<tail>", value)
    return value


def shown(row: Described, value: Any) -> Any:
    """A value as printed: secrets are never shown, only whether one is set; a database
    URL's password is masked."""
    if row.secret and value is not None:
        return "(development default)" if value == row.default else HIDDEN
    return masked(value)


def table(name: str, rows: list[Described]) -> Table:
    out = Table(title=f"{name} settings", title_justify="left")
    for column in ("variable", "value", "default", "source", "meaning"):
        out.add_column(column, overflow="fold")
    for row in rows:
        default = HIDDEN if row.secret else str(row.default)
        out.add_row(row.env, str(shown(row, row.value)), default, row.source, row.doc)
    return out


def cmd_config(args: argparse.Namespace, console: Console) -> int:
    names = [args.service] if args.service else list(ALL)
    try:
        described = {name: ALL[name].describe() for name in names}
    except ValueError as exc:  # a malformed variable: the message names it
        console.print(f"[red]{masked(str(exc))}[/red]")
        return 2
    if args.json:
        print(
            json.dumps(
                {
                    name: {
                        row.env: {
                            "value": shown(row, row.value),
                            "default": HIDDEN if row.secret else row.default,
                            "source": row.source,
                        }
                        for row in rows
                    }
                    for name, rows in described.items()
                },
                indent=2,
                default=str,
            )
        )
        return 0
    for name, rows in described.items():
        console.print(table(name, rows))
    return 0


def add_parser(sub: argparse._SubParsersAction, console: Console) -> None:
    config = sub.add_parser(
        "config", help="every setting of a service: value, default and where it came from"
    )
    config.add_argument(
        "service", nargs="?", choices=list(ALL), help="one service (default: every one)"
    )
    config.add_argument("--json", action="store_true", help="print JSON instead of tables")
    config.set_defaults(func=lambda args: cmd_config(args, console))

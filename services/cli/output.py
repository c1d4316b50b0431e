"""Safe, usable CLI output: tables whose cells are shown literally, wide when piped, and NDJSON.

- Every cell of a table is shown exactly as given: a chat id such as ``http:a:b::c@d.e-f`` must not become an
  emoji (rich replaces ``:a:``-style codes in strings) and ``[red]`` in a group name must not become a style
  (issue 16). Cells are wrapped in :class:`rich.text.Text`, which rich renders without markup or emoji codes;
  our own styling goes through :func:`styled`.
- On a terminal tables fit its width; piped or redirected, rich would cut them at 80 columns and hide ids, so
  they are printed as wide as their content instead.
- ``--json`` output is NDJSON: one compact JSON object per line (:func:`print_ndjson`).
"""

from __future__ import annotations

import json
import sys
from typing import Any, Iterable

from rich.console import Console
from rich.table import Table
from rich.text import Text

PIPED_WIDTH = 100_000
"""Columns a table may take when stdout is not a terminal: never cut, only as wide as its content."""


def table(*columns: str, title: str | None = None) -> Table:
    return Table(*columns, title=title, highlight=False)


def add_row(target: Table, *cells: Any) -> None:
    """Add a row of literal cells: ``str`` (or anything else, via ``str``) is never parsed for markup or emoji;
    ``None`` is an empty cell; a :class:`Text` (from :func:`styled`) keeps its style."""
    target.add_row(*(c if isinstance(c, Text) else Text("" if c is None else str(c)) for c in cells))


def styled(markup: str) -> Text:
    """A cell in our own rich markup (``[green]same[/green]``); never pass user text here."""
    return Text.from_markup(markup, emoji=False)


def print_table(console: Console, target: Table) -> None:
    if console.is_terminal:
        console.print(target)
        return
    # Console.print(width=…) can only narrow; a console of its own for the same file can be wider.
    Console(file=console.file, width=PIPED_WIDTH, color_system=None, highlight=False).print(target, crop=False)


def print_ndjson(rows: Iterable[dict[str, Any]]) -> None:
    """One compact JSON object per line on stdout, flushed per line (a consumer may follow it live)."""
    for row in rows:
        sys.stdout.write(json.dumps(row, ensure_ascii=False, separators=(",", ":"), default=str) + "\n")
        sys.stdout.flush()


def say(console: Console, text: str) -> None:
    """A line holding user strings (ids, names, triggers), printed as it is: no markup, emoji codes or
    highlighting, and not wrapped when piped."""
    console.print(text, markup=False, emoji=False, highlight=False, soft_wrap=True)


def error_line(console: Console, problem: object, label: str = "error") -> None:
    """``error: <problem>`` with the label in red and the problem shown literally."""
    console.print(Text.assemble((label, "red"), ": ", str(problem)), soft_wrap=True)

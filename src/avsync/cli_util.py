"""What every CLI command shares: the stderr console and the one-line failure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console

from avsync.errors import AvsyncError

err = Console(stderr=True)


def fail(message: str, code: int = 1) -> None:
    """Print ``error: MESSAGE`` on stderr and exit with ``code``."""
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def one_sentence(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``; any failure becomes one line on stderr and exit code 1."""
    try:
        return fn(*args, **kwargs)
    except AvsyncError as exc:
        fail(one_sentence(exc))
    except Exception as exc:  # noqa: BLE001
        fail(f"unexpected failure ({type(exc).__name__}: {one_sentence(exc)})")

"""Safe output files: checks up front, write to a temp file beside the target, rename at the end.

Every avsync writer (media, JSON, PNG, ...) goes through :func:`atomic_output`, so that a failed
or interrupted write never leaves a half-written file under the requested name, never touches
the input file and never replaces an existing file unless the user asked for it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path

from avsync.errors import OutputError

PathLike = str | os.PathLike[str]


def temp_name(out: Path, token: str = "") -> Path:
    """The hidden temp file used while writing ``out``: ``.{stem}.avsync-tmp{token}{suffix}``."""
    return out.with_name(f".{out.stem}.avsync-tmp{token}{out.suffix}")


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def check_output_path(
    out_path: PathLike, overwrite: bool = False, protect: Iterable[PathLike] = ()
) -> Path:
    """Validate ``out_path`` for writing; raise OutputError (one sentence) when unusable.

    Refuses: the same file as any path in ``protect`` (the inputs), an existing file unless
    ``overwrite``, a folder, and a parent folder that is missing or not writable.
    """
    out = Path(out_path)
    for src in protect:
        if _same_file(out, Path(src)):
            raise OutputError(
                f"Refusing to write {out}: it is the input file; choose another output path."
            )
    if out.is_dir():
        raise OutputError(f"Cannot write {out}: it is a folder.")
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise OutputError(f"{out} exists; pass --overwrite to replace it.")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"Cannot write {out}: the folder {parent} does not exist.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"Cannot write {out}: the folder {parent} is not writable.")
    return out


def _create_temp(out: Path) -> Path:
    """Create (exclusively, honouring the umask) an empty temp file next to ``out``."""
    for attempt in range(20):
        tmp = temp_name(out, "" if attempt == 0 else "-" + secrets.token_hex(4))
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            reason = exc.strerror or exc
            raise OutputError(
                f"Cannot write {out}: the folder {out.parent} is not writable ({reason})."
            ) from exc
        os.close(fd)
        return tmp
    raise OutputError(f"Cannot write {out}: could not create a temporary file beside it.")


@contextlib.contextmanager
def atomic_output(
    out_path: PathLike, overwrite: bool = False, *, protect: Iterable[PathLike] = ()
) -> Iterator[Path]:
    """Yield a temp path to write to; on success it is renamed onto ``out_path`` atomically.

    The checks of :func:`check_output_path` run first (``protect`` lists input files that must
    never be the output). The temp file lives in the output's folder, named
    ``.{stem}.avsync-tmp{suffix}`` (the suffix is kept so that format-by-extension still works).
    If the body raises, the temp file is deleted and neither ``out_path`` nor any input is
    touched.
    """
    out = check_output_path(out_path, overwrite, protect)
    tmp = _create_temp(out)
    try:
        yield tmp
        if not overwrite and out.exists():  # appeared while we were writing
            raise OutputError(f"{out} exists; pass --overwrite to replace it.")
        try:
            os.replace(tmp, out)
        except OSError as exc:
            raise OutputError(f"Cannot write {out}: {exc.strerror or exc}.") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise

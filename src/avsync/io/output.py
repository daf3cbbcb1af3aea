"""Safe output files: checks up front, write to a temp file beside the target, rename at the end.

Every avsync writer (media, JSON, PNG, ...) goes through :func:`atomic_output`, so that a failed
or interrupted write never leaves a half-written file under the requested name, never touches
the input file and never replaces an existing file unless the user asked for it.

Faults while writing (tested in tests/test_write_faults.py):

* killed (even by SIGKILL) at any point: ``out`` is either absent (or the old file) or the
  complete new file -- the data is written to ``.{stem}.avsync-tmp-{host}-{pid}-{hex}{suffix}``
  and fsync'ed before one ``rename``. The next write to the same ``out`` deletes the temp files
  of dead processes of this host (a live writer's temp file is left alone).
* a full disk (ENOSPC), a file-size limit (``ulimit -f``: CPython ignores SIGXFSZ, so ``write``
  fails with EFBIG) and a read-only folder: the writer's error propagates (media writers turn
  it into an OutputError) and the temp file is removed.
* two writers to one ``out`` at once: each has its own temp file, and the rename is atomic, so
  ``out`` is one whole file from one of them; without ``overwrite`` the loser gets an error
  (``os.link`` publishes the file only if ``out`` does not exist yet).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from avsync.errors import OutputError

PathLike = str | os.PathLike[str]
TEMP_MARK = ".avsync-tmp"
_LEGACY_STALE_S = 3600.0  # a temp file without a pid in its name is stale after an hour
_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:12] or "host"


def temp_name(out: Path, token: str = "") -> Path:
    """The hidden temp file used while writing ``out``: ``.{stem}.avsync-tmp{token}{suffix}``."""
    return out.with_name(f".{out.stem}{TEMP_MARK}{token}{out.suffix}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists
        return True
    return True


def clean_stale_temps(out: PathLike) -> list[Path]:
    """Delete the temp files of ``out`` left by writers that died (same host, pid gone).

    Returns the paths removed. Temp files of live processes, of other hosts, and other files
    are never touched; old-style names without a pid are removed when older than an hour.
    """
    out = Path(out)
    pattern = re.compile(
        re.escape(f".{out.stem}{TEMP_MARK}") + r"(?:-(\w+)-(\d+)-[0-9a-f]+)?" + re.escape(out.suffix) + "$"
    )
    removed = []
    try:
        entries = list(out.parent.glob(f".{out.stem}{TEMP_MARK}*"))
    except OSError:
        return removed
    for tmp in entries:
        m = pattern.match(tmp.name)
        if m is None:
            continue
        host, pid = m.group(1), m.group(2)
        try:
            if pid is None:
                stale = time.time() - tmp.lstat().st_mtime > _LEGACY_STALE_S
            else:
                stale = host == _HOST and int(pid) != os.getpid() and not _pid_alive(int(pid))
            if stale:
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            continue
    return removed


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
    """Create (exclusively, honouring the umask) an empty temp file next to ``out``, named
    after this host and process so that a later run can tell whether its writer is gone."""
    for _ in range(20):
        tmp = temp_name(out, f"-{_HOST}-{os.getpid()}-{secrets.token_hex(3)}")
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise OutputError(f"Cannot write {out}: {_reason(exc, out.parent)}.") from exc
        os.close(fd)
        return tmp
    raise OutputError(f"Cannot write {out}: could not create a temporary file beside it.")


def _reason(exc: OSError, folder: Path) -> str:
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"the folder {folder} is not writable ({exc.strerror})"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return f"{exc.strerror} (the disk is full or the file is too large)"
    return str(exc.strerror or exc)


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(tmp: Path, out: Path, overwrite: bool) -> None:
    """Make the complete ``tmp`` appear as ``out`` in one step."""
    _fsync(tmp)
    if overwrite:
        os.replace(tmp, out)
    else:
        try:
            os.link(tmp, out)  # atomic create-if-absent, even against a concurrent writer
        except FileExistsError:
            raise OutputError(f"{out} exists; pass --overwrite to replace it.") from None
        except OSError:  # a file system without hard links: check, then rename
            if out.exists() or out.is_symlink():
                raise OutputError(f"{out} exists; pass --overwrite to replace it.") from None
            os.replace(tmp, out)
        else:
            with contextlib.suppress(OSError):
                tmp.unlink()
    with contextlib.suppress(OSError):  # durability of the rename; not all systems allow it
        _fsync(out.parent if str(out.parent) else Path("."), directory=True)


@contextlib.contextmanager
def atomic_output(
    out_path: PathLike, overwrite: bool = False, *, protect: Iterable[PathLike] = ()
) -> Iterator[Path]:
    """Yield a temp path to write to; on success it is renamed onto ``out_path`` atomically.

    The checks of :func:`check_output_path` run first (``protect`` lists input files that must
    never be the output). The temp file lives in the output's folder, named
    ``.{stem}.avsync-tmp-{host}-{pid}-{hex}{suffix}`` (the suffix is kept so that
    format-by-extension still works); stale ones of dead writers are deleted first. If the body
    raises, the temp file is deleted and neither ``out_path`` nor any input is touched. An
    OSError while publishing (full disk, ...) becomes an OutputError.
    """
    out = check_output_path(out_path, overwrite, protect)
    clean_stale_temps(out)
    tmp = _create_temp(out)
    try:
        yield tmp
        try:
            _publish(tmp, out, overwrite)
        except OSError as exc:
            raise OutputError(f"Cannot write {out}: {_reason(exc, out.parent)}.") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise

"""Crash-safe file writing and cross-process locks.

Every file ptibench writes for later reading goes through here: written to a temporary name in
the same folder, fsynced, then renamed over the target, so a reader sees the old file or the
new one, never half of one. OS errors (disk full, read-only folder) become one-line
PtibenchErrors naming the path.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock

from ptibench.errors import PtibenchError


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable: the folder entry itself must reach the disk."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def ensure_dir(folder: Path) -> Path:
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PtibenchError(f"cannot create folder {folder}: {error.strerror or error}") from error
    return folder


def _new_temp_file(path: Path) -> Path:
    """An empty file of a fresh name next to `path`, created with mode 0666 less the umask (as
    open() would create `path` itself; tempfile.mkstemp's 0600 would make every report private)."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path.parent))


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on clean exit fsync it and rename it into place."""
    path = Path(path)
    ensure_dir(path.parent)
    try:
        tmp = _new_temp_file(path)
    except OSError as error:
        raise PtibenchError(f"cannot write {path}: {error.strerror or error}") from error
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise PtibenchError(f"cannot write {path}: {error.strerror or error}") from error
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def json_safe(value: Any) -> Any:
    """NaN/inf are not JSON: they become null (and keys strings) so every reader parses it."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def atomic_write_json(path: Path, data: Any) -> None:
    text = json.dumps(json_safe(data), indent=2, sort_keys=True, allow_nan=False)
    atomic_write_text(path, text + "\n")


def read_json(path: Path) -> Any:
    """Parse a JSON file; a corrupt or unreadable one is a PtibenchError naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PtibenchError(f"cannot read {path}: {error}") from error


def atomic_copy(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def publish_dir(staging: Path, final: Path) -> bool:
    """Rename a fully written staging folder to `final`; False (staging kept) if `final` exists.

    A folder rename is atomic, so readers see either no entry or a complete one.
    """
    for item in staging.rglob("*"):
        if item.is_file():
            with open(item, "rb+") as handle:
                os.fsync(handle.fileno())
    try:
        os.rename(staging, final)
    except OSError as error:
        if final.exists():
            return False
        raise PtibenchError(f"cannot write {final}: {error.strerror or error}") from error
    _fsync_dir(final.parent)
    return True


def file_lock(path: Path) -> FileLock:
    """A lock shared by every process on this machine (and across xdist workers)."""
    path = Path(path)
    ensure_dir(path.parent)
    return FileLock(str(path))

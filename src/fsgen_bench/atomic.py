"""Atomic file writes: a reader (another rank, another run, a crash's aftermath) sees the old file or the new
one, never half of one.

The data goes to a temporary file in the target's folder (same file system, so the final ``os.replace`` is
atomic), which replaces the target only when writing finished without an exception; on an exception it is
removed. ``fsync=True`` also flushes the data to disk before the rename (checkpoints: a power cut must not
leave a renamed but empty file).

Temporary names are unique per writer by default, so that processes racing to write the same cache file
never write into one temporary file. A process killed mid-write (SIGKILL runs no cleanup) leaves its
temporary file behind; where a target has one writer at a time (a run's checkpoints, written by rank 0),
``unique=False`` gives the temporary file a fixed name, which the next write of that target reuses.

    with atomic_write(path, "wb", fsync=True) as fh:     # a file object
        torch.save(state, fh)
    with atomic_path(path) as tmp:                        # a path, for libraries that write by name
        image.save(tmp)
    write_text_atomic(path, text)
"""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


def _temporary_name(path: Path, keep_suffix: bool, unique: bool = True) -> Path:
    """``.<name>.<pid>.<random>.tmp`` beside ``path``: hidden, unique per writer, and not matching the patterns
    readers glob for (``*.ckpt``, ``*.jsonl``); ``.<name>.tmp`` when not ``unique``. With ``keep_suffix`` it ends
    in the target's own suffix instead (``.<stem>.<pid>.<random>.tmp.png``), for libraries that choose the
    format from it (PIL) or append one (np.save)."""
    token = f".{os.getpid()}.{secrets.token_hex(4)}" if unique else ""
    if keep_suffix:
        return path.with_name(f".{path.stem}{token}.tmp{path.suffix}")
    return path.with_name(f".{path.name}{token}.tmp")


@contextmanager
def atomic_path(path: str | os.PathLike, *, keep_suffix: bool = True, unique: bool = True) -> Iterator[Path]:
    """A temporary path beside ``path``; whatever was written there replaces ``path`` on a clean exit."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(path, keep_suffix, unique)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", *, fsync: bool = False, unique: bool = True,
                 encoding: str | None = None, newline: str | None = None) -> Iterator[IO]:
    """A file object open for writing (``"w"`` or ``"wb"``) whose content replaces ``path`` on a clean exit.

    The file is created with the usual permissions (0o666 less the umask), as ``open`` would create it.
    ``unique=False``: one writer per target; a temporary file a killed writer left is truncated and reused.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write writes a whole file: mode 'w' or 'wb', not {mode!r}")
    with atomic_path(path, keep_suffix=False, unique=unique) as tmp:
        flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if unique else os.O_TRUNC)
        fd = os.open(tmp, flags, 0o666)
        if mode == "wb":
            fh = os.fdopen(fd, "wb")
        else:
            fh = os.fdopen(fd, "w", encoding=encoding or "utf-8", newline=newline)
        with fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_write(path) as fh:
        fh.write(text)
    return Path(path)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_write(path, "wb") as fh:
        fh.write(data)
    return Path(path)

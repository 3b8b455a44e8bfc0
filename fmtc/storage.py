"""Atomic file writes and content hashes shared by every stage that writes to disk.

A cache or cohort file is either complete or absent: each writer goes to a
temporary file in the destination folder and is moved into place with
:func:`os.replace`, which is atomic on POSIX file systems.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def not_utf8(error: UnicodeDecodeError) -> str:
    """The message for a text file that is not UTF-8: where, and how to fix it."""
    return (f"not UTF-8 text (byte {error.object[error.start]:#04x} at offset {error.start}); "
            "save it as UTF-8")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` on success.

    Parameters
    ----------
    path : path-like
        Final destination. Its parent folder is created if missing.

    Yields
    ------
    Path
        Temporary file to write. It is removed if the block raises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file for writing that replaces ``path`` atomically on close."""
    with atomic_path(path) as tmp:
        kwargs = {} if "b" in mode else {"encoding": "utf-8", "newline": "\n"}
        with open(tmp, mode, **kwargs) as handle:
            yield handle


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON with a final newline, atomically."""
    with atomic_open(path) as handle:
        json.dump(obj, handle, indent=2, sort_keys=True, ensure_ascii=False)
        handle.write("\n")


def write_torch(path: str | os.PathLike[str], obj: Any) -> None:
    """``torch.save`` of ``obj`` to ``path``, atomically; a failed write raises :class:`OSError`.

    The archive is built in memory, then written: ``torch.save`` to a file turns a full disk
    into an opaque ``RuntimeError`` (``enforce fail at inline_container.cc``), and to a path it
    names the archive's records after the temporary file. The bytes are those of
    ``torch.save(obj, handle)``.
    """
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_open(path, "wb") as handle:
        handle.write(buffer.getbuffer())


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Return the hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_tree(root: str | os.PathLike[str]) -> str:
    """Hash every file under ``root`` (relative path and content), in sorted order.

    What is read is hashed, whatever the links: a symbolic link (to a file, or to a folder
    such as a subject folder) is followed and its target's content hashed under the link's
    path, so that changing a linked recording changes the hash (DataLad and git-annex cohorts,
    whose files are links into the annex, hash their content). A link that loops back into a
    folder already being walked is not followed twice. Hidden files and folders (names
    starting with a dot) are skipped, so caches, records or editor files inside a folder do not
    change its identity; so are the files of an fmtc record (``.fmtc-result.json``).
    """
    root = Path(root)
    digest = hashlib.sha256()
    for relative, path in _files(root, root, set()):
        digest.update(relative.encode())
        digest.update(b"\0")
        digest.update(sha256_file(path).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _files(root: Path, folder: Path, walking: set[str]) -> list[tuple[str, Path]]:
    """``(relative path, path)`` of every non-hidden file under ``folder``, links followed."""
    real = os.path.realpath(folder)
    if real in walking:  # a link back into a folder being walked
        return []
    walking = walking | {real}
    found: list[tuple[str, Path]] = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        if entry.is_dir():  # follows links
            found += _files(root, path, walking)
        elif entry.is_file():
            found.append((path.relative_to(root).as_posix(), path))
    return found

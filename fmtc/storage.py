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
import shutil
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


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Return the hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_tree(root: str | os.PathLike[str], pattern: str = "**/*") -> str:
    """Hash every file under ``root`` (relative path and content), in sorted order.

    Hidden files and folders (names starting with a dot) are skipped, so caches
    or editor files inside a folder do not change its identity.
    """
    root = Path(root)
    digest = hashlib.sha256()
    for path in sorted(root.glob(pattern)):
        rel = path.relative_to(root)
        if not path.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        digest.update(rel.as_posix().encode())
        digest.update(b"\0")
        digest.update(sha256_file(path).encode())
        digest.update(b"\n")
    return digest.hexdigest()


@contextlib.contextmanager
def staged_folder(destination: str | os.PathLike[str], overwrite: bool = False,
                  what: str = "folder") -> Iterator[Path]:
    """Yield an empty staging folder beside ``destination``; publish it there on success.

    A result folder (cohort, encoder, run) is therefore either absent or complete. On
    error the staging folder is removed and ``destination`` is untouched.

    Parameters
    ----------
    destination : path-like
        Final folder.
    overwrite : bool
        Replace an existing ``destination`` (moved aside, then removed once the new one is
        in place). Without it, an existing ``destination`` raises
        :class:`~fmtc.errors.OutputExistsError` before anything is computed.
    what : str
        What the folder holds, for messages (``cohort``, ``encoder``).
    """
    from fmtc.errors import OutputError, OutputExistsError

    destination = Path(destination)
    if destination.exists() and not overwrite:
        raise OutputExistsError(f"{destination} already exists; choose another output folder, or "
                                f"pass --overwrite to replace the {what} in it")
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.staging-",
                                        dir=destination.parent))
    except OSError as error:
        raise OutputError(f"cannot write into {destination.parent}: {error.strerror}; choose "
                          "another output folder") from None
    try:
        yield staging
        staging.chmod(0o755)
        old = None
        if destination.exists():
            if not overwrite:
                raise OutputExistsError(f"{destination} appeared while this {what} was written; "
                                        "pass --overwrite to replace it")
            old = destination.with_name(f".{destination.name}.replaced-{os.getpid()}")
            destination.rename(old)
        staging.rename(destination)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def check_replaceable(destination: str | os.PathLike[str], markers: tuple[str, ...],
                      what: str) -> None:
    """Refuse to replace ``destination`` unless it is empty or holds one of ``markers``.

    ``--overwrite`` replaces a previous result of the same kind (a cohort, a run); it
    must never delete a folder of other files given to ``--out`` by mistake.
    """
    from fmtc.errors import OutputExistsError

    destination = Path(destination)
    if not destination.exists():
        return
    if destination.is_dir() and (not any(destination.iterdir())
                                 or any((destination / m).exists() for m in markers)):
        return
    kind = "a file" if not destination.is_dir() else "a folder of other files"
    raise OutputExistsError(f"{destination} is {kind}, not a {what}; --overwrite only replaces a "
                            f"{what}. Choose another output folder")


def check_writable(folder: str | os.PathLike[str], what: str, fix: str) -> None:
    """Create ``folder`` if needed and prove a file can be written there, before any work.

    Raises :class:`~fmtc.errors.OutputError` naming ``what`` the folder is for and ``fix``.
    """
    from fmtc.errors import OutputError

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".fmtc-write-test-"):
            pass
    except OSError as error:
        raise OutputError(f"{folder}: cannot write {what} there ({error.strerror}). "
                          f"{fix}") from None


def publish_folder(staging: str | os.PathLike[str], destination: str | os.PathLike[str]) -> None:
    """Move a complete ``staging`` folder to ``destination``, replacing any earlier one.

    The earlier folder is moved aside first and removed only once the new one is in
    place, so ``destination`` always holds one complete result or the other.
    """
    staging, destination = Path(staging), Path(destination)
    old = None
    if destination.exists():
        old = destination.with_name(f".{destination.name}.replaced-{os.getpid()}")
        destination.rename(old)
    staging.rename(destination)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

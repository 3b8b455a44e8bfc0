"""One lifecycle for everything fmtc computes: identity, reuse, staging, provenance, publishing.

A *result* — a cohort, an encoder, a feature cache, a fit, a run, a generalisation, an
interpretation, an executed page — is a :class:`Result`: it declares its kind, its typed
configuration and the identities of its inputs, how to compute itself into an empty folder,
and how to read a published folder back. :func:`materialise` is the only code that turns one
into a folder:

1. the identity (kind, declared version of its computation, configuration, inputs, the
   versions of the numeric packages) is hashed into a key;
2. a published folder with that key (holding the optional artifacts asked for, e.g. a fit's
   weights) is read back, not recomputed;
3. otherwise the result is computed into a staging folder beside its destination (kept across
   interruptions for resumable kinds), its record is written last, and the folder is moved into
   place whole; one process computes a destination at a time (a lock beside it), the others
   wait and read its result back;
4. a destination holding another result is replaced only with ``overwrite`` and only by a
   result of the same kind, and the destination is never a file-system root, the home folder,
   at or above one of them, or inside a folder the result reads.

The record (:data:`RECORD`, a hidden file, so a cohort folder stays a clean BIDS derivative
and outside its own content hash) holds the kind, version, key, identity, optional artifacts
and provenance (git commit, packages, device, seconds). Versions are declared in
:mod:`fmtc.versions` and pinned by golden tests, never derived from fmtc's source: a
refactor that leaves results identical changes no key.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import errno
import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from fmtc.errors import OutputError, OutputExistsError
from fmtc.storage import write_json
from fmtc.versions import version

logger = logging.getLogger(__name__)

RECORD = ".fmtc-result.json"
"""The record of a published result (kind, key, identity, artifacts, provenance)."""

KEY_LENGTH = 16

RESULT_PACKAGES = ("numpy", "scipy", "scikit-learn", "torch", "torchvision")
"""Packages whose version can change a result's numbers (part of every identity)."""

LOCKS = ".locks"
"""Folder beside results holding one lock file per destination."""


# --------------------------------------------------------------------------- identities


def canonical(value: Any) -> Any:
    """``value`` as plain JSON data: dataclasses, paths, tuples, sets and numpy values converted."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(canonical(v) for v in value)
    if isinstance(value, Path):
        return value.as_posix()
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return canonical(value.tolist())
    return value


def digest(value: Any, length: int | None = None) -> str:
    """sha256 (hex) of the canonical JSON of ``value``, optionally cut to ``length``."""
    payload = json.dumps(canonical(value), sort_keys=True, separators=(",", ":"),
                         ensure_ascii=True)
    text = hashlib.sha256(payload.encode()).hexdigest()
    return text[:length] if length else text


def array_digest(*arrays: Any) -> str:
    """sha256 of the dtype, shape and bytes of each array (None counts as an absent array)."""
    import numpy as np

    hasher = hashlib.sha256()
    for array in arrays:
        if array is None:
            hasher.update(b"none;")
            continue
        value = np.ascontiguousarray(array)
        hasher.update(f"{value.dtype.str}{value.shape};".encode())
        hasher.update(value.tobytes())
    return hasher.hexdigest()


@functools.cache
def environment() -> dict[str, str]:
    """Versions of :data:`RESULT_PACKAGES` (part of every identity)."""
    from fmtc.provenance import versions_of

    return versions_of(RESULT_PACKAGES)


class Result(abc.ABC):
    """One kind of computed thing (see the module docstring).

    Subclasses set ``kind`` (a key of :data:`fmtc.versions.VERSIONS`) and implement
    :meth:`config`, :meth:`default_folder`, :meth:`compute` and :meth:`load`; they may
    declare ``inputs`` (identities of what they read), ``extras`` (optional
    artifacts, computed only when asked for), ``resumable`` (the staging folder survives an
    interruption and ``compute`` resumes from it) and :meth:`provenance`.
    """

    kind: ClassVar[str]
    extras: ClassVar[frozenset[str]] = frozenset()
    resumable: ClassVar[bool] = False
    place: ClassVar[str] = ""
    """The plan key of the folder the result is published in by default (for messages)."""
    artifact: ClassVar[str] = "folder"
    """``folder`` (the record is a file in it) or ``file`` (a single file that carries its
    record itself: :meth:`read_record_at`, :meth:`write_record` and :meth:`stage`)."""

    @abc.abstractmethod
    def config(self) -> Mapping[str, Any]:
        """What defines the result (made plain data by :func:`~fmtc.lifecycle.canonical`)."""

    def inputs(self) -> Mapping[str, Any]:
        """Identities of what the result reads: other results' keys, content hashes."""
        return {}

    def input_folders(self) -> list[Path]:
        """Folders the result reads; it is never written inside one of them."""
        return []

    @abc.abstractmethod
    def default_folder(self) -> Path:
        """Where the result is published unless a folder is given."""

    @abc.abstractmethod
    def compute(self, staging: Path, extras: frozenset[str]) -> None:
        """Write the result (and the optional artifacts ``extras``) into ``staging``."""

    @abc.abstractmethod
    def load(self, folder: Path, record: dict[str, Any]) -> Any:
        """Read a published result back."""

    def provenance(self) -> dict[str, Any]:
        """Facts about the computation that are not part of its identity."""
        return {}

    def read_record_at(self, destination: Path) -> dict[str, Any] | None:
        """The record of what ``destination`` holds (None: no result, or a damaged record)."""
        return read_record(destination)

    def write_record(self, staging: Path, record: dict[str, Any]) -> None:
        """Write the record into the staged result, last (it marks the result complete)."""
        write_json(staging / RECORD, record)

    def stage(self, destination: Path) -> Path:
        """A staging place beside ``destination`` (folders: an empty folder, kept across an
        interruption for resumable kinds)."""
        if self.resumable:
            staging = staging_folder(destination, self.key)
            for other in destination.parent.glob(f".{destination.name}.*.partial"):
                if other != staging:  # an interrupted computation of other settings
                    logger.info("discarding %s: the partial %s of other settings", other,
                                self.kind)
                    shutil.rmtree(other, ignore_errors=True)
            if staging.is_dir():
                logger.info("resuming the %s from %s", self.kind, staging)
            staging.mkdir(parents=True, exist_ok=True)
            return staging
        return Path(tempfile.mkdtemp(prefix=f".{destination.name}.staging-",
                                     dir=destination.parent))

    def identity(self) -> dict[str, Any]:
        """Everything that defines the result: kind, version, config, inputs, environment."""
        return {"kind": self.kind, "version": version(self.kind),
                "config": canonical(self.config()), "inputs": canonical(self.inputs()),
                "environment": environment()}

    @functools.cached_property
    def key(self) -> str:
        """Short hash of :meth:`identity`."""
        return digest(self.identity(), KEY_LENGTH)

    def describe(self) -> str:
        """``<kind> <key>``, for messages."""
        return f"{self.kind} {self.key}"


@dataclass
class Materialised:
    """A result in its folder.

    Attributes
    ----------
    folder : Path
    key : str
    reused : bool
        True when a published result was read back (nothing computed).
    value : object
        :meth:`Result.load` of the folder (None with ``load=False``).
    record : dict
        The folder's record (:data:`RECORD`).
    """

    folder: Path
    key: str
    reused: bool
    value: Any
    record: dict[str, Any]

    @property
    def extras(self) -> frozenset[str]:
        """The optional artifacts the folder holds."""
        return frozenset(self.record.get("extras", ()))


# --------------------------------------------------------------------------- records


def read_record(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The record of a published result, or None when ``folder`` holds none (or a damaged one)."""
    try:
        record = json.loads((Path(folder) / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not {"kind", "key"} <= set(record):
        return None
    return record


def kind_of(folder: str | os.PathLike[str]) -> str | None:
    """The kind of result ``folder`` holds (None: none)."""
    record = read_record(folder)
    return None if record is None else str(record["kind"])


@functools.cache
def _git_commit() -> str | None:
    from fmtc.provenance import git_commit

    return git_commit()


def _provenance(result: Result, seconds: float) -> dict[str, Any]:
    from fmtc.provenance import package_versions

    return {**result.provenance(), "packages": package_versions(), "git_commit": _git_commit(),
            "seconds": round(seconds, 3)}


# --------------------------------------------------------------------------- locations


def check_location(destination: Path, result: Result | None = None) -> None:
    """Refuse a destination at or above a file-system root or the home folder, or in an input.

    Raises :class:`~fmtc.errors.OutputError` naming the folder.
    """
    resolved = Path(os.path.abspath(destination))
    home = Path(os.path.abspath(Path.home()))
    if resolved == Path(resolved.anchor) or resolved == home or home.is_relative_to(resolved):
        raise OutputError(f"{destination}: refusing to write a result at or above the file-system "
                          "root or the home folder; choose a folder of its own")
    for folder in (result.input_folders() if result is not None else []):
        inside = Path(os.path.realpath(folder))
        if Path(os.path.realpath(resolved)).is_relative_to(inside):
            raise OutputError(f"{destination} lies inside {folder}, which this {result.kind} "
                              "reads; choose an output folder outside it")


def check_writable(folder: Path, what: str) -> None:
    """Create ``folder`` if needed and prove a file can be written there, before any work.

    ``what`` names what is written and where it was chosen (``the run (--out)``, ``run folders
    (plan key outputs.runs_dir)``): the message says which setting to change.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".fmtc-write-test-"):
            pass
    except OSError as error:
        raise OutputError(f"{folder}: cannot write {what} there ({error.strerror}); choose "
                          "another folder") from None


def check_output(destination: Path, kind: str, *, explicit: bool = True,
                 overwrite: bool = False, key: str | None = None, artifact: str = "folder",
                 record: dict[str, Any] | None = None) -> None:
    """Raise unless ``destination`` may receive a result of ``kind`` (before any work).

    It may when it is absent or empty; when it holds a result of the same kind with ``key``
    (or any key, with ``overwrite``, or in the store's own folder named by the key); or debris
    of an interrupted writer in a folder of the store. It never may when it is a file (a folder,
    for a single-file result), holds a result of another kind, or holds files that are not an
    fmtc result: ``--overwrite`` never deletes those. ``record`` is what it holds (default: its
    :data:`RECORD`).
    """
    if not destination.exists() and not destination.is_symlink():
        return
    if artifact == "folder" and not destination.is_dir():
        raise OutputExistsError(f"{destination} is a file, not a {kind} folder; choose "
                                "another output folder")
    if artifact == "file" and destination.is_dir():
        raise OutputExistsError(f"{destination} is a folder, not a {kind}; choose "
                                "another output path")
    record = record if record is not None else (
        read_record(destination) if artifact == "folder" else None)
    if record is None:
        if artifact == "file" or not any(destination.iterdir()) or not explicit:
            return  # empty, debris of an interrupted writer, or a file without a record
        raise OutputExistsError(f"{destination} holds files that are not an fmtc result; "
                                f"--overwrite only replaces a {kind}. Choose another "
                                "output folder")
    if record["kind"] != kind:
        raise OutputExistsError(f"{destination} holds a {record['kind']}, not a {kind}; "
                                "a result is never replaced by one of another kind. Choose "
                                "another output folder")
    if key is not None and record["key"] != key and not overwrite and explicit:
        raise OutputExistsError(f"{destination} holds another {kind} (key {record['key']}); "
                                f"this one's key is {key}. Choose another output folder, or "
                                "pass --overwrite to replace it")


def _check_replaceable(destination: Path, result: Result, explicit: bool,
                       overwrite: bool) -> None:
    """:func:`check_output` for ``result`` (its record read the way the result keeps it)."""
    record = result.read_record_at(destination) if destination.exists() else None
    check_output(destination, result.kind, explicit=explicit, overwrite=overwrite,
                 key=result.key, artifact=result.artifact, record=record)


@contextlib.contextmanager
def _lock(destination: Path) -> Iterator[None]:
    """Hold the destination's lock (one fmtc process computes a destination at a time).

    The lock file (``.locks/<name>.lock`` beside the destination) is removed by its holder
    before it lets go; a waiter that then finds the file gone or replaced starts again, so no
    two processes ever hold the lock of one destination, and no lock file is left behind.
    """
    import fcntl

    folder = destination.parent / LOCKS
    path = folder / f"{destination.name}.lock"
    waited = False
    while True:
        folder.mkdir(parents=True, exist_ok=True)
        try:
            handle = open(path, "a+")  # noqa: SIM115 - closed below, after the unlink
        except FileNotFoundError:  # the folder was removed meanwhile: again
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not waited:
                logger.info("waiting for another fmtc process computing %s", destination)
                waited = True
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            same = os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        handle.close()  # its holder removed it: take the lock anew
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        handle.close()
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when empty


def staging_folder(destination: Path, key: str) -> Path:
    """The resumable staging folder of ``key`` beside ``destination``."""
    return destination.parent / f".{destination.name}.{key}.partial"


def _publish(staging: Path, destination: Path) -> None:
    """Move ``staging`` to ``destination``; an earlier folder is removed only once replaced."""
    staging.chmod(0o755 if staging.is_dir() else 0o644)
    if not staging.is_dir():  # a single file replaces the earlier one atomically
        os.replace(staging, destination)
        return
    old = None
    if destination.exists() or destination.is_symlink():
        old = destination.with_name(f".{destination.name}.replaced-{os.getpid()}")
        destination.rename(old)
    staging.rename(destination)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
"""``errno`` values of a write refused for want of room: a full device, a quota, a file-size
limit (``ulimit -f``)."""


def _disk_full(destination: Path, result: Result, error: OSError) -> OutputError:
    reason = {errno.EDQUOT: "the disk quota is exceeded",
              errno.EFBIG: "a file exceeds the size limit (ulimit -f)"}.get(
        error.errno, "no space left on the device")
    return OutputError(f"{destination}: {reason} while writing this {result.kind}; "
                       "nothing was published there. Free some space (or choose another output "
                       "folder) and run the command again")


# --------------------------------------------------------------------------- the lifecycle


def find(result: Result, folder: str | os.PathLike[str] | None = None,
         need: Iterable[str] = ()) -> Materialised | None:
    """The published ``result`` holding ``need``, read back; None when it must be computed."""
    from fmtc.errors import CacheError

    destination = Path(folder) if folder is not None else result.default_folder()
    record = result.read_record_at(destination)
    if (record is None or record["kind"] != result.kind or record["key"] != result.key
            or not frozenset(need) <= frozenset(record.get("extras", ()))):
        return None
    try:
        value = result.load(destination, record)
    except CacheError as error:  # a damaged result is reported, then rebuilt, never trusted
        logger.warning("%s is damaged: %s; recomputing it", destination, error)
        return None
    return Materialised(destination, result.key, True, value, record)


def materialise(result: Result, folder: str | os.PathLike[str] | None = None, *,
                overwrite: bool = False, need: Iterable[str] = (),
                load: bool = True) -> Materialised:
    """Read ``result`` back from its folder, or compute and publish it there.

    Parameters
    ----------
    result : Result
    folder : path-like, optional
        The destination (default: :meth:`Result.default_folder`).
    overwrite : bool
        Recompute even a published identical result, and replace a result of the same kind
        and another key in ``folder``.
    need : iterable of str
        Optional artifacts (``Result.extras``) the caller needs; a published result
        without them is recomputed with them (and with those it already had).
    load : bool
        Read the published result back (:meth:`Result.load`).

    Returns
    -------
    Materialised
    """
    need = frozenset(need)
    unknown = need - result.extras
    if unknown:
        raise ValueError(f"a {result.kind} has no optional artifact(s) {sorted(unknown)}; known: "
                         f"{sorted(result.extras)}")
    explicit = folder is not None
    destination = Path(folder) if explicit else result.default_folder()
    check_location(destination, result)
    if not overwrite and (found := find(result, destination, need)) is not None:
        return found if load else dataclasses.replace(found, value=None)
    _check_replaceable(destination, result, explicit, overwrite)
    chosen = " (--out)" if explicit else f" (plan key {result.place})" if result.place else ""
    check_writable(destination.parent, f"the {result.kind}{chosen}")
    with _lock(destination):
        if not overwrite and (found := find(result, destination, need)) is not None:
            return found if load else dataclasses.replace(found, value=None)
        _check_replaceable(destination, result, explicit, overwrite)
        previous = result.read_record_at(destination)
        extras = need | (frozenset(previous.get("extras", ())) if previous
                         and previous["key"] == result.key else frozenset())
        record = _compute(result, destination, extras)
    value = result.load(destination, record) if load else None
    return Materialised(destination, result.key, False, value, record)


def _compute(result: Result, destination: Path, extras: frozenset[str]) -> dict[str, Any]:
    staging = result.stage(destination)

    def discard() -> None:
        if result.resumable:
            return
        if staging.is_dir():
            shutil.rmtree(staging, ignore_errors=True)
        elif staging.exists():
            staging.unlink()

    start = time.perf_counter()
    try:
        result.compute(staging, extras)
        record = {"kind": result.kind, "version": version(result.kind), "key": result.key,
                  "identity": result.identity(), "extras": sorted(extras),
                  "provenance": _provenance(result, time.perf_counter() - start)}
        result.write_record(staging, record)
        _publish(staging, destination)
    except OSError as error:
        discard()
        if error.errno in NO_ROOM:
            raise _disk_full(destination, result, error) from None
        raise
    except BaseException:
        discard()
        if result.resumable and staging.is_dir():
            logger.info("the finished part of the %s is kept in %s; the same command resumes "
                        "from it", result.kind, staging)
        raise
    logger.debug("published %s in %s (%.1f s)", result.describe(), destination,
                 time.perf_counter() - start)
    return record


# --------------------------------------------------------------------------- where results live


@dataclass(frozen=True)
class Store:
    """The folders results are published in by default (the plan's ``outputs``, resolved).

    Attributes
    ----------
    data : Path
        Downloads and atlases (``data/atlases``).
    cohorts, features, models, fits, runs : Path
        Cohorts, BrainLM feature caches, pretrained encoders, fits, run folders.
    """

    data: Path
    cohorts: Path
    features: Path
    models: Path
    fits: Path
    runs: Path

    @classmethod
    def under(cls, root: str | os.PathLike[str]) -> Store:
        """Every folder under ``root`` (``root/cohorts``, ``root/fits``, ...)."""
        root = Path(root)
        return cls(root, root / "cohorts", root / "features", root / "models", root / "fits",
                   root / "runs")

    @property
    def atlases(self) -> Path:
        """Where atlases are downloaded or generated."""
        return self.data / "atlases"

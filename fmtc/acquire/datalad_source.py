"""DataLad sources: clone a dataset at a pinned version, get and drop file content.

DataLad (Halchenko et al. 2021, "DataLad: distributed system for joint
management of code, data, and their relationship", JOSS 6:3262) is used through
its Python API, imported inside the functions. Clones are never recursive: the
fMRIPrep derivatives of ds000208 list ``sourcedata/raw``, ``templateflow`` and
container subdatasets that fmtc never needs.

Sources (https://github.com/OpenNeuroDatasets/ds000208, tag ``1.0.1``;
https://github.com/OpenNeuroDerivatives/ds000208-fmriprep, fMRIPrep 21.0.2) are
pinned below by commit and DataLad dataset id; a clone with another id is refused.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from fmtc.errors import EXIT_INVALID_DATA, FmtcError, InvalidDataError

logger = logging.getLogger(__name__)


class DatasetMismatchError(InvalidDataError):
    """A cloned dataset has another DataLad id or version than the one asked for."""


class SourceUnreachableError(FmtcError, OSError):
    """The host of a remote source does not answer."""

    exit_code = EXIT_INVALID_DATA


@dataclass(frozen=True)
class DataladSource:
    """Where a DataLad dataset comes from and which one it must be.

    Attributes
    ----------
    url : str
        Git URL or local path of the dataset.
    revision : str or None
        Commit, tag or branch to check out; ``None`` keeps the source's HEAD.
    dataset_id : str
        Expected ``datalad.dataset.id`` (from ``.datalad/config``).
    name : str
        Human-readable name for messages.
    """

    url: str
    revision: str | None
    dataset_id: str
    name: str = "dataset"

    def override(self, url: str | None, revision: str | None) -> DataladSource:
        """Return this source with another URL/path and revision (HEAD unless given)."""
        if url is None:
            return self if revision is None else replace(self, revision=revision)
        if revision is None:
            logger.warning("%s from %s is not pinned to a commit: its HEAD is used (and recorded "
                           "in the cohort's description). Pass the matching --*-revision to "
                           "pin it.", self.name, url)
        return replace(self, url=str(url), revision=revision)


DS000208_RAW = DataladSource(
    url="https://github.com/OpenNeuroDatasets/ds000208.git",
    revision="f718509da3ac054fc9ab191c1bbdb984710a932e",  # tag 1.0.1
    dataset_id="47670aa6-887e-11e8-bbe3-0242ac12000e",
    name="ds000208 (raw BIDS, v1.0.1)")

DS000208_FMRIPREP = DataladSource(
    url="https://github.com/OpenNeuroDerivatives/ds000208-fmriprep.git",
    revision="88375b795814c2ec894c219ca5287338135906fd",
    dataset_id="c0eed5ef-a2dd-4b6e-84e7-d9b9f6ae37f8",
    name="ds000208-fmriprep (fMRIPrep 21.0.2 derivatives)")



def datalad_api() -> Any:
    """``datalad.api``, or an error that names the install command when DataLad is missing."""
    try:
        import datalad.api
    except ImportError as error:
        raise ImportError("fetching OpenNeuro data needs DataLad and git-annex, which the "
                          "`data` extra installs: pip install 'fmtc[data]'") from error
    return datalad.api

def check_reachable(url: str, timeout: float = 10.0) -> None:
    """Fail fast when a remote source's host does not answer; local paths are checked exist.

    Parameters
    ----------
    url : str
        ``https://``, ``http://``, ``ssh://`` or ``git@host:`` URL, or a local path.
    timeout : float
        Seconds to wait for the TCP connection.

    Raises
    ------
    SourceUnreachableError
        The host cannot be reached (offline, DNS failure, firewall).
    FileNotFoundError
        A local path does not exist.
    """
    host, port = _host_and_port(url)
    if host is None:
        path = Path(url.removeprefix("file://"))
        if not path.exists():
            raise FileNotFoundError(f"dataset source {path} does not exist")
        return
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as error:
        raise SourceUnreachableError(
            f"cannot reach {host}:{port} for {url} within {timeout:g} s ({error}). "
            "Fetching the real data needs network access; offline, pass local DataLad "
            "clones with --raw-source PATH and --derivatives-source PATH.") from error


def _host_and_port(url: str) -> tuple[str | None, int]:
    if url.startswith("git@") or (":" in url and "://" not in url and not Path(url).exists()
                                  and "@" in url.split(":")[0]):
        return url.split("@", 1)[1].split(":", 1)[0], 22
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https", "ssh", "git") and parsed.hostname:
        default = {"http": 80, "https": 443, "ssh": 22, "git": 9418}[parsed.scheme]
        return parsed.hostname, parsed.port or default
    return None, 0


def install_dataset(source: DataladSource, path: str | Path, probe_timeout: float = 10.0) -> Path:
    """Clone ``source`` into ``path`` (never recursively) or reuse an earlier clone.

    The clone is checked out at ``source.revision`` and its DataLad id checked.

    Parameters
    ----------
    source : DataladSource
        URL or path, revision and expected dataset id.
    path : path-like
        Where the clone lives (reused when it already holds this dataset).
    probe_timeout : float
        Seconds for the connectivity probe of a remote URL.

    Returns
    -------
    Path
        The clone.

    Raises
    ------
    DatasetMismatchError
        The dataset id or revision is not the expected one.
    """
    dl = datalad_api()

    path = Path(path)
    if not (path / ".datalad" / "config").is_file():
        if path.exists() and any(path.iterdir()):
            raise FileExistsError(f"{path} exists and is not a DataLad clone; remove it or choose "
                                  "another --work-dir")
        check_reachable(source.url, probe_timeout)
        try:
            dl.clone(source=source.url, path=str(path), result_renderer="disabled")
        except Exception as error:  # datalad raises IncompleteResultsError and others
            raise OSError(f"datalad clone of {source.name} from {source.url} failed: "
                          f"{_first_line(error)}") from error
    check_dataset_id(path, source)
    if source.revision is not None:
        _checkout(path, source)
    return path


def check_dataset_id(path: str | Path, source: DataladSource) -> str:
    """Return the clone's DataLad id; raise :class:`DatasetMismatchError` unless expected."""
    config = Path(path) / ".datalad" / "config"
    found = run_git(path, "config", "-f", str(config), "--get", "datalad.dataset.id",
                 check=False).strip() if config.is_file() else ""
    if found != source.dataset_id:
        raise DatasetMismatchError(
            f"{source.url} cloned into {path} is DataLad dataset {found or '(no id)'}, not "
            f"{source.name} ({source.dataset_id}). Point the source option at the right "
            f"dataset, or remove {path} if an earlier run cloned something else there.")
    return found


def head_commit(path: str | Path) -> str:
    """Return the commit checked out in a clone."""
    return run_git(path, "rev-parse", "HEAD").strip()


def _checkout(path: Path, source: DataladSource) -> None:
    wanted = run_git(path, "rev-parse", "--verify", "--quiet", f"{source.revision}^{{commit}}",
                  check=False).strip()
    if not wanted:
        raise DatasetMismatchError(f"{source.name}: revision {source.revision!r} is not in "
                                   f"{source.url}; check --*-revision")
    if head_commit(path) != wanted:
        run_git(path, "checkout", "--quiet", "--detach", wanted)
    if head_commit(path) != wanted:
        raise DatasetMismatchError(f"{path}: could not check out {source.revision}")


def get_content(dataset: str | Path, paths: Sequence[str | Path], attempts: int = 4,
                backoff: float = 1.0) -> list[Path]:
    """Download the annexed content of ``paths``; return those actually downloaded.

    Files whose content was already present are not returned, so dropping the
    returned list leaves the clone as it was. Failed files are tried again
    ``attempts - 1`` times, waiting ``backoff`` seconds, then twice as long, ...:
    a download that drops out, or a transfer lock held by another process
    getting the same content (``--jobs``), is usually gone by then.
    """
    dl = datalad_api()

    dataset = Path(dataset)
    pending = [str(dataset / p) for p in paths]
    fetched: list[Path] = []
    attempts = max(attempts, 1)
    for attempt in range(attempts):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        results = dl.get(path=pending, dataset=str(dataset), recursive=False,
                         result_renderer="disabled", on_failure="ignore", return_type="list")
        fetched += [Path(r["path"]) for r in results if r.get("status") == "ok"
                    and r.get("action") == "get" and r.get("type") == "file"]
        failed = [r for r in results if r.get("status") not in ("ok", "notneeded")]
        if not failed:
            return fetched
        pending = [str(r.get("path")) for r in failed if r.get("path")] or pending
    first = failed[0]
    raise OSError(f"datalad get failed for {first.get('path')} after {attempts} attempt(s): "
                  f"{_result_message(first)}")


def drop_content(dataset: str | Path, paths: Sequence[str | Path]) -> None:
    """Drop the local content of ``paths`` (annexed files only).

    ``reckless="availability"``: the content was only ever downloaded from the
    dataset's remotes and never modified, so it can be obtained again; skipping
    the remote availability check keeps drops fast and offline-safe.
    """
    dl = datalad_api()

    if not paths:
        return
    results = dl.drop(path=[str(p) for p in paths], dataset=str(dataset), reckless="availability",
                      result_renderer="disabled", on_failure="ignore", return_type="list")
    failed = [r for r in results if r.get("status") not in ("ok", "notneeded")]
    if failed:
        raise OSError(f"datalad drop failed for {failed[0].get('path')}: "
                      f"{_result_message(failed[0])}")


def has_content(path: str | Path) -> bool:
    """True when an annexed file's content is present (its symlink resolves)."""
    return Path(path).exists()


def run_git(path: str | Path, *args: str, check: bool = True) -> str:
    """``git -C path *args``: its stdout; an OSError naming the command when it fails."""
    completed = subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True,
                               check=False)
    if check and completed.returncode != 0:
        raise OSError(f"git {' '.join(args)} in {path} failed: {completed.stderr.strip()}")
    return completed.stdout


def _result_message(result: dict) -> str:
    """The first line of a DataLad result's reason (git-annex puts it in ``error_message``)."""
    return _first_line(result.get("message") or result.get("error_message")
                       or result.get("status"))


def _first_line(message: object) -> str:
    if isinstance(message, tuple):  # datalad messages may be (format, *args)
        try:
            message = message[0] % message[1:]
        except TypeError:
            message = " ".join(map(str, message))
    text = str(message).strip()
    return text.splitlines()[0] if text else "(no message)"

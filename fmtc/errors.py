"""The errors a user can meet, one class per kind, each with its command-line exit status.

Every failure that a user can cause or fix (a damaged cohort file, a plan typo, an
output folder that is not writable, a corrupt cache) is raised as a subclass of
:class:`FmtcError`. Its message names the file, subject or plan key at fault and says
what to do; ``fmtc`` prints it as one line (``--debug`` shows the traceback) and exits
with :attr:`FmtcError.exit_code`:

====  =====================================================================
code  meaning
====  =====================================================================
0     success
1     invalid or unavailable data: cohort, checkpoint, cache, dataset, notebook
2     usage: command-line options, plan files, output folders
130   interrupted (Ctrl-C); 143 terminated (SIGTERM) - finished work is kept
====  =====================================================================

Each class also derives from the built-in exception it refines (``ValueError``,
``FileExistsError``, ...), so code written against the built-ins keeps working.
"""

from __future__ import annotations

EXIT_INVALID_DATA = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

MESSAGE_BYTES = 500
"""Most bytes of the one error line ``fmtc`` prints (:func:`one_line`); longer is cut."""

ELLIPSIS = " … "
"""What replaces the middle of a message or value that was cut (:func:`clip`)."""


def clip(text: str, limit: int = MESSAGE_BYTES) -> str:
    """``text`` on one line and at most ``limit`` UTF-8 bytes, its middle cut if longer.

    Line breaks become ``"; "``. The head (which names the file, subject or plan key) and
    the tail (what to do) are kept; the middle is replaced by :data:`ELLIPSIS`.

    Parameters
    ----------
    text : str
        Any message.
    limit : int
        Most UTF-8 bytes of the result (at least 20).

    Returns
    -------
    str
    """
    text = "; ".join(line.strip() for line in str(text).splitlines() if line.strip())
    if len(text.encode("utf-8")) <= limit:
        return text
    room = max(limit - len(ELLIPSIS.encode("utf-8")), 8)
    head, tail = _prefix(text, room * 2 // 3), _suffix(text, room - room * 2 // 3)
    return f"{head}{ELLIPSIS}{tail}"


def _prefix(text: str, size: int) -> str:
    """The longest start of ``text`` of at most ``size`` UTF-8 bytes."""
    return text.encode("utf-8")[:size].decode("utf-8", errors="ignore")


def _suffix(text: str, size: int) -> str:
    """The longest end of ``text`` of at most ``size`` UTF-8 bytes."""
    data = text.encode("utf-8")
    return data[len(data) - size:].decode("utf-8", errors="ignore") if size > 0 else ""


def one_line(prefix: str, message: str, suffix: str = "") -> str:
    """The error line ``prefix + message + suffix``, at most :data:`MESSAGE_BYTES` bytes.

    Only ``message`` is cut (:func:`clip`): the ``fmtc <command>: error: `` prefix and a
    closing hint stay whole.
    """
    room = MESSAGE_BYTES - len(prefix.encode("utf-8")) - len(suffix.encode("utf-8"))
    return f"{prefix}{clip(message, max(room, 40))}{suffix}"


class FmtcError(Exception):
    """Base of every user-facing error of fmtc."""

    exit_code: int = EXIT_USAGE


class InvalidDataError(FmtcError, ValueError):
    """Input data (cohort, recording, checkpoint, dataset) is missing, damaged or implausible."""

    exit_code = EXIT_INVALID_DATA


class CacheError(InvalidDataError):
    """A cache entry (features, encoder) is damaged; it is rebuilt, or the message says how.

    ``path`` is the damaged file and ``reason`` what is wrong with it (either may be None).
    """

    def __init__(self, message: str, path: object = None, reason: str | None = None):
        super().__init__(message)
        self.path = path
        self.reason = reason


class UsageError(FmtcError, ValueError):
    """A command-line option or a plan value that cannot work."""

    exit_code = EXIT_USAGE


class OutputError(FmtcError, OSError):
    """An output folder cannot be written, or holds another result that must not be lost."""

    exit_code = EXIT_USAGE


class OutputExistsError(OutputError, FileExistsError):
    """The destination holds another result; the message says how to keep or replace it."""


class Terminated(BaseException):  # noqa: N818 - mirrors KeyboardInterrupt
    """Raised in the main thread when the process receives SIGTERM (see :mod:`fmtc.cli`)."""

"""Running independent tasks on joblib: in this process, local workers, or a Dask cluster.

The cross-validation fits of an experiment (arm x repeat x fold) and its summaries are
independent tasks. :class:`Executor` maps a function over them with joblib and yields the
results *in task order*, whatever finishes first, so that what is written from them does
not depend on the backend or the number of workers. Each task runs under
:func:`task_threads`: its torch and BLAS thread counts are set to
``threads_per_worker`` for its duration and restored afterwards, so workers do not
oversubscribe the cores and a task computes the same bits wherever it runs.

Backends:

- ``n_jobs=1``: sequentially in this process (no pickling);
- ``n_jobs>1`` or ``-1``: joblib's ``loky`` worker processes on this machine; large
  arrays reach the workers memory-mapped, not copied;
- ``dask_scheduler="tcp://host:8786"``: joblib's ``dask`` backend on a running
  ``distributed`` cluster (e.g. a ``dask_jobqueue.SLURMCluster``); the shared inputs are
  scattered to the workers once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

LEAK_ALLOWANCE = 2 << 30
"""Growth of a loky worker (bytes) tolerated before it is replaced as leaking."""


@contextlib.contextmanager
def task_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` torch and BLAS threads, then restore the previous counts."""
    from threadpoolctl import threadpool_limits

    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None
    previous = torch.get_num_threads() if torch is not None else None
    with threadpool_limits(threads):
        if torch is not None:
            torch.set_num_threads(threads)
        try:
            yield
        finally:
            if torch is not None:
                torch.set_num_threads(previous)


def _call_with_threads(function: Callable[..., Any], threads: int, task: Any,
                       shared: Any, release: bool = False, parent: int | None = None) -> Any:
    if release:  # a worker process (loky or Dask), not the calling process
        tune_allocator()
    if parent is not None:
        exit_with_parent(parent)
    try:
        with task_threads(threads):
            return function(task, shared)
    finally:
        if release:
            _release_memory()


MMAP_THRESHOLD = 32 << 20
"""glibc ``M_MMAP_THRESHOLD`` set by :func:`tune_allocator` (bytes): blocks below it come from
the heap and are reused, not from fresh ``mmap`` pages (32 MiB is glibc's own upper bound)."""

TRIM_THRESHOLD = 128 << 20
"""glibc ``M_TRIM_THRESHOLD`` set by :func:`tune_allocator` (bytes): free memory kept at the
top of the heap before ``free`` returns it to the system (the end of a task trims it all)."""


def tune_allocator() -> bool:
    """Let a worker reuse the memory it frees during a task instead of mapping it afresh.

    A Dask nanny starts its workers with ``MALLOC_TRIM_THRESHOLD_=65536``. That fixes glibc's
    mmap threshold at 128 KiB, so every FC batch and activation of a fit (most are larger)
    is a fresh ``mmap`` whose pages fault in and are zeroed again, step after step: measured
    on FMM_TC fits (smoke sizes, 424-region FC), 3-14x the page faults, 2-10x the system time
    and 1.3-1.5x the wall time of the same fits with the settings here
    (``benchmarks/bench_dask_allocator.py``). Sets :data:`MMAP_THRESHOLD` and
    :data:`TRIM_THRESHOLD` with ``mallopt`` (idempotent; glibc on Linux only, elsewhere
    nothing is changed and False returned). Where memory comes from cannot change a number.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, MMAP_THRESHOLD)) and bool(
        mallopt(m_trim_threshold, TRIM_THRESHOLD))


PARENT_POLL_S = 1.0
"""How often a local worker checks that the process that started it is alive (seconds)."""

_WATCH_THREAD = "fmtc-exit-with-parent"


def exit_with_parent(parent: int) -> None:
    """Make this worker process exit within :data:`PARENT_POLL_S` once ``parent`` is gone.

    loky keeps a worker alive when its parent is killed (``kill -9``, an out-of-memory kill):
    the worker finishes its fit, then idles for minutes holding its memory. A daemon thread
    (one per process) compares the worker's parent process id with ``parent``, the pid of
    the process that submitted the task; once the worker is re-parented it exits at once.
    Only local workers are watched (a Dask worker belongs to its cluster).
    """
    import threading

    if any(thread.name == _WATCH_THREAD for thread in threading.enumerate()):
        return
    if os.getppid() != parent:  # already orphaned before its first task
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name=_WATCH_THREAD, daemon=True).start()


def _release_memory() -> None:
    """Return a worker's freed heap to the system after a task.

    Without it, glibc keeps the pages of a finished fit, the worker's resident size only
    grows, and loky replaces the worker as "leaking" (a costly restart with a fresh
    torch import).
    """
    import ctypes
    import gc

    gc.collect()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
    # loky measures a worker's size after its first task and replaces the worker once it has
    # grown by 300 MB. The first torch fit of a worker keeps ~200-400 MB of kernels and
    # thread pools for good (measured), which is not a leak; allow for it. (Private constant
    # of joblib's vendored loky; without it only the restarts come back.)
    with contextlib.suppress(ImportError, AttributeError):
        from joblib.externals.loky import process_executor

        process_executor._MAX_MEMORY_LEAK_SIZE = max(process_executor._MAX_MEMORY_LEAK_SIZE,
                                                     LEAK_ALLOWANCE)


def check_dask_available(address: str | None, option: str = "execution.dask_scheduler") -> None:
    """Refuse a Dask scheduler address early when the ``distributed`` package is missing.

    Called by the commands before they read a cohort, so that the missing package is a
    one-line usage error, not a traceback after minutes of work.

    Parameters
    ----------
    address : str or None
        ``execution.dask_scheduler``; None or empty: nothing to check.
    option : str
        The option or plan key that set it, named in the message.

    Raises
    ------
    fmtc.errors.UsageError
    """
    import importlib.util

    from fmtc.errors import UsageError

    if not address:
        return
    try:
        found = importlib.util.find_spec("distributed") is not None
    except (ImportError, ValueError):  # a broken or stubbed install
        found = False
    if not found:
        raise UsageError(f"{option} {address}: the Dask 'distributed' package is not "
                         "installed; install it with pip install 'fmtc[dask]', or run without "
                         "a scheduler (local workers: --jobs N)")


def progress_enabled() -> bool:
    """Progress bars show when stderr is a terminal and fmtc logs at INFO or below."""
    return sys.stderr.isatty() and logging.getLogger("fmtc").getEffectiveLevel() <= logging.INFO


@dataclass(frozen=True)
class Executor:
    """Where the tasks of an experiment run (see the module docstring).

    Attributes
    ----------
    n_jobs : int
        1: this process; >1: that many local worker processes; -1: one per core.
    threads_per_worker : int
        Torch / BLAS threads of each task.
    dask_scheduler : str or None
        Address of a Dask scheduler; overrides ``n_jobs``.
    """

    n_jobs: int = 1
    threads_per_worker: int = 1
    dask_scheduler: str | None = None

    @property
    def backend(self) -> str:
        """``sequential``, ``loky`` or ``dask``."""
        if self.dask_scheduler:
            return "dask"
        return "sequential" if self.n_jobs == 1 else "loky"

    def describe(self) -> dict[str, Any]:
        """Facts for a run's provenance (not part of a result's identity)."""
        workers = self.n_jobs if self.n_jobs != -1 else os.cpu_count()
        return {"backend": self.backend, "n_jobs": workers,
                "threads_per_worker": self.threads_per_worker,
                "dask_scheduler": self.dask_scheduler}

    def map(self, function: Callable[[Any, Any], Any], tasks: Sequence[Any], shared: Any = None,
            *, desc: str = "tasks", progress: bool | None = None) -> Iterator[Any]:
        """Yield ``function(task, shared)`` for every task, in the order of ``tasks``.

        Parameters
        ----------
        function : callable
            A module-level function (it is pickled for workers).
        tasks : sequence
            Picklable task descriptions.
        shared : object, optional
            Read-only inputs every task needs (passed once per task locally, memory-mapped
            by loky, scattered once to a Dask cluster).
        desc : str
            Label of the progress bar.
        progress : bool, optional
            Show a tqdm bar (default: :func:`progress_enabled`).
        """
        from tqdm import tqdm

        show = progress_enabled() if progress is None else progress
        with tqdm(total=len(tasks), desc=desc, disable=not show, leave=False) as bar:
            for result in self._results(function, tasks, shared):
                bar.update(1)
                yield result

    def _results(self, function: Callable[[Any, Any], Any], tasks: Sequence[Any],
                 shared: Any) -> Iterable[Any]:
        if self.backend == "sequential":
            for task in tasks:
                yield _call_with_threads(function, self.threads_per_worker, task, shared)
            return
        from joblib import Parallel, delayed, parallel_config

        parent = os.getpid() if self.backend == "loky" else None
        calls = (delayed(_call_with_threads)(function, self.threads_per_worker, task, shared,
                                             True, parent)
                 for task in tasks)
        if self.backend == "loky":
            # Workers inherit these limits at start-up; each task sets its own counts anyway.
            with parallel_config(backend="loky", n_jobs=self.n_jobs,
                                 inner_max_num_threads=self.threads_per_worker):
                yield from Parallel(return_as="generator")(calls)
            return
        with self._dask_client() as client, parallel_config(
                backend="dask", scatter=[shared] if shared is not None else None):
            workers = client.scheduler_info().get("workers", {})
            logger.info("running %d task(s) on the Dask cluster at %s (%d worker(s))",
                        len(tasks), self.dask_scheduler, len(workers))
            threaded = sorted(w.get("name", a) for a, w in workers.items()
                              if w.get("nthreads", 1) > 1)
            if threaded:
                logger.warning(
                    "Dask worker(s) %s run several tasks at once in one process; torch's thread "
                    "count and determinism switches are per process, so results may differ in "
                    "their last bits from a run elsewhere. Start workers with one thread each "
                    "(e.g. `dask worker --nthreads 1`, SLURMCluster(cores=1, processes=1)).",
                    threaded)
            yield from Parallel(return_as="generator")(calls)

    @contextlib.contextmanager
    def _dask_client(self) -> Iterator[Any]:
        try:
            from distributed import Client
        except ImportError as error:  # pragma: no cover - depends on the install
            raise RuntimeError("execution.dask_scheduler needs the 'distributed' package: "
                               "pip install 'fmtc[dask]'") from error
        client = Client(self.dask_scheduler, set_as_default=False)
        try:
            with client.as_current():
                yield client
        finally:
            client.close()

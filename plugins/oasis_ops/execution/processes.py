"""The processes a task starts: none inherited by mistake, none dying unnoticed, none left behind.

oasislmf starts processes inside a task: its keys lookup forks a pool (``billiard`` when Celery is
installed, else ``multiprocessing``), its loss pipelines are shell scripts of ``evepy | gulmc |
fmpy ...``. A task process is itself a bare ``os.fork()`` of Airflow's supervisor, which on the
Celery stack is a Celery (billiard) pool process forked from the worker. :func:`task_processes`
wraps every task body and keeps three promises:

* **No inherited children.** ``multiprocessing`` keeps a registry of the children it started, and a
  bare fork copies it: the Celery worker's log server (a ``multiprocessing.Process``) is listed as a
  child in every task. Any process that oasislmf forks then fails on exit, when ``multiprocessing``
  tries to join that foreign process (``AssertionError: can only join a child process``), before it
  flushes its queues: the lookup's results are lost and the task waits for them forever. The
  registries are emptied of processes that are not this process' children, as ``multiprocessing``
  itself does in the processes it starts.
* **A dead child fails the task.** oasislmf's process pool waits for its processes' results without
  end, and a loss pipeline whose ``gulmc`` dies before opening its output pipe leaves the next tool
  waiting on the pipe, and the script with it, for ever. A watchdog interrupts the task with
  :class:`ChildProcessDied`, naming the process and how it died, when a ``multiprocessing`` child of
  the task is killed or exits with an error (it peeks at their exit status without reaping them), or
  when a pipeline tool (``gulmc``, ``fmpy``, ...) ends without logging that it finished, as each
  does, while other tools of its run folder still run (a pipeline left waiting is what hangs; once
  they all ended, oasislmf's own check of the logs judges them). (Other commands are their callers'
  business: oasislmf's scripts kill some of their own helpers when they stop, so a killed descendant
  alone is no sign of failure.)
* **Nothing left behind, nothing published after a stop.** The task process is a child subreaper,
  so that a pipeline orphaned by its shell stays its descendant; whatever it started is terminated
  when the task ends, however it ends. A SIGTERM (the run marked failed or cancelled, the worker
  shutting down) raises :class:`TaskStopped` in the task after Airflow's own handler ran: oasislmf's
  scripts exit 0 on SIGTERM, and the step would otherwise publish a half-computed result.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing.process
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

log = logging.getLogger(__name__)

#: prctl(2): orphaned descendants are re-parented to this process rather than to init.
_PR_SET_CHILD_SUBREAPER = 36
#: The signal the watchdog interrupts the task's main thread with (Airflow's task runner leaves it alone).
_INTERRUPT = signal.SIGUSR1
_POLL_SECONDS = 0.5
#: oasislmf's pipeline tools: each logs ``finishing process`` to ``log/[<part>/]<tool>_<pid>_*.log`` in its
#: run folder as it ends (oasislmf's own scripts check the same).
PIPELINE_TOOLS = frozenset(("evepy", "modelpy", "gulpy", "gulmc", "fmpy", "summarypy", "plapy", "katpy", "eltpy", "pltpy", "aalpy", "lecpy"))
_FINISHED = b"finishing process"
_TERMINATE_GRACE_SECONDS = 5.0


class ChildProcessDied(RuntimeError):
    """A process the task started died abnormally; the task fails (and may be retried) at once."""


class TaskStopped(BaseException):
    """The task was told to stop (SIGTERM): a BaseException, so that no ``except Exception`` in
    oasislmf carries on to publish what its stopped pipelines left."""


def _registries() -> list[set]:
    """``multiprocessing``'s registries of started children: the standard library's and billiard's."""
    registries = [multiprocessing.process._children]  # type: ignore[attr-defined]
    with contextlib.suppress(ImportError):
        import billiard.process

        registries.append(billiard.process._children)
    return registries


def forget_inherited_children() -> int:
    """Drop the processes ``multiprocessing`` lists as children that this process did not start."""
    forgotten = 0
    for registry in _registries():
        for process in list(registry):
            if getattr(process, "_parent_pid", os.getpid()) != os.getpid():
                registry.discard(process)
                forgotten += 1
    return forgotten


def _multiprocessing_children() -> dict[int, str]:
    """pid -> name (``ForkProcess-1:2``) of the processes ``multiprocessing`` started here."""
    return {p.pid: p.name for registry in _registries() for p in list(registry) if p.pid is not None}


def _become_subreaper() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _exit_status(pid: int) -> os.waitid_result | None:
    """How child ``pid`` ended, without reaping it (its parent still collects it); None while it runs."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return None


def _how_it_died(status: os.waitid_result) -> str | None:
    if status.si_code in (os.CLD_KILLED, os.CLD_DUMPED):
        return f"was killed by {signal.Signals(status.si_status).name}"
    if status.si_code == os.CLD_EXITED and status.si_status != 0:
        return f"exited with code {status.si_status}"
    return None


class _Watchdog(threading.Thread):
    """Polls this process' ``multiprocessing`` children; the first abnormal death interrupts the main thread."""

    def __init__(self, main_thread_id: int) -> None:
        super().__init__(name="oasis-child-watchdog", daemon=True)
        self.main_thread_id = main_thread_id
        self.stopped = threading.Event()
        self.death: str | None = None
        #: pid -> (tool, run folder) of the pipeline tools seen running.
        self._tools: dict[int, tuple[str, str]] = {}

    def run(self) -> None:
        while not self.stopped.wait(_POLL_SECONDS):
            death = self._dead_pool_process() or self._dead_pipeline_tool()
            if death and not self.stopped.is_set():
                self.death = death
                signal.pthread_kill(self.main_thread_id, _INTERRUPT)
                return

    def _dead_pool_process(self) -> str | None:
        for pid, name in _multiprocessing_children().items():
            status = _exit_status(pid)
            how = _how_it_died(status) if status else None
            if how:
                return f"child process {name} (pid {pid}) {how}"
        return None

    def _dead_pipeline_tool(self) -> str | None:
        running: dict[int, str] = {}
        for process in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if process.status() != psutil.STATUS_ZOMBIE and process.name() in PIPELINE_TOOLS:
                    if process.pid not in self._tools:
                        self._tools[process.pid] = (process.name(), process.cwd())
                    running[process.pid] = self._tools[process.pid][1]
        for pid in [pid for pid in self._tools if pid not in running]:
            tool, folder = self._tools.pop(pid)
            if folder not in running.values():
                # Its pipelines are over: oasislmf checks every tool's log itself, and the task may
                # already be removing the run folder (logs included) as it cleans up.
                continue
            logs = list(Path(folder, "log").rglob(f"{tool}_{pid}_*.log"))
            if not any(_FINISHED in log.read_bytes() for log in logs):
                return f"loss pipeline process {tool} (pid {pid}) ended without finishing (killed?); its log: {logs[0] if logs else 'none'}"
        return None


def _terminate(processes: list[psutil.Process]) -> list[psutil.Process]:
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=_TERMINATE_GRACE_SECONDS)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    return processes


def terminate_descendants(keep: frozenset[int] = frozenset()) -> list[psutil.Process]:
    """Terminate (then kill) every live descendant of this process except ``keep``."""
    descendants = [p for p in psutil.Process().children(recursive=True) if p.pid not in keep]
    if descendants:
        log.warning("Stopping %d process(es) the task left behind: %s", len(descendants), [p.pid for p in descendants])
    return _terminate(descendants)


@contextlib.contextmanager
def task_processes() -> Iterator[None]:
    """Run a task body under the three promises of this module (see its docstring)."""
    forgotten = forget_inherited_children()
    if forgotten:
        log.info("Forgot %d process(es) multiprocessing listed as children of this task but inherited by fork", forgotten)
    _become_subreaper()
    earlier = frozenset(p.pid for p in psutil.Process().children(recursive=True))
    watchdog: _Watchdog | None = None
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        watchdog = _Watchdog(threading.get_ident())

        def interrupted(signum: int, frame: Any) -> None:
            if watchdog is not None and watchdog.death and not watchdog.stopped.is_set():
                raise ChildProcessDied(f"{watchdog.death}; the task stops here (see the log above for its last output)")

        def terminated(signum: int, frame: Any) -> None:
            handler = previous[signal.SIGTERM]
            if callable(handler):
                handler(signum, frame)  # Airflow's: the operator's on_kill
            raise TaskStopped("the task was stopped (SIGTERM); nothing of this attempt is published")

        previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, terminated), _INTERRUPT: signal.signal(_INTERRUPT, interrupted)}
        watchdog.start()
    try:
        yield
    finally:
        if watchdog is not None:
            watchdog.stopped.set()
            watchdog.join()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        terminate_descendants(keep=earlier)

"""Storage hygiene: the ``oasis_storage_hygiene`` DAG removes what ended runs and killed tasks left behind.

A v2 run keeps its intermediate files after a failure (clearing the failed chunk resumes the run from
them), and a task killed mid-way (worker lost, run cancelled) never removes its scratch folder. Every
sweep (``OASIS_HYGIENE_SCHEDULE``, hourly by default; on the maintenance worker's queue) removes:

- a run's intermediate folder once its DAG run ended (success or failed) longer than
  ``OASIS_INTERMEDIATE_RETENTION_DAYS`` ago (7 by default), or no longer exists;
- a scratch folder under ``.work/`` whose task instance is not running, once nothing in it has changed
  for :data:`SCRATCH_GRACE`.

Folders name their DAG run or task instance in their owner record (:class:`~oasis_ops.storage.Owner`),
and Airflow says whether that run or task is still going: a queued or running run's intermediate files
and a running task's scratch folder are never removed. A folder without a record (made before records
existed) goes once nothing in it has changed for the retention. Each removal is logged with the bytes
it freed, then the total.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from airflow.sdk import DAG, TaskInstanceState, task

from oasis_ops.config import OasisConfig
from oasis_ops.constants import MAINTENANCE_QUEUE
from oasis_ops.storage import LOCAL_PROTOCOLS, Owner, Storage

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath
    from airflow.sdk.types import RuntimeTaskInstanceProtocol

log = logging.getLogger(__name__)

DAG_ID = "oasis_storage_hygiene"
#: How long a scratch folder of a task that is not running is left alone after its last change: a task
#: makes its folder only once Airflow marked it running, so this covers a task still stopping after
#: Airflow marked it ended, and the clocks of the workers and of the hygiene task a little apart.
SCRATCH_GRACE = timedelta(minutes=10)
#: DAG run states (``DagRunState``) after which nothing more happens to a run, unless it is cleared
#: (which makes it queued).
ENDED = ("success", "failed")
#: Task instance states in which the task's process may still be working in its scratch folder.
RUNNING = (TaskInstanceState.RUNNING, TaskInstanceState.RESTARTING)


class Kind(StrEnum):
    """What a swept folder holds."""

    INTERMEDIATE = "intermediate files"
    SCRATCH = "scratch folder"


@dataclass(frozen=True)
class RunState:
    """A DAG run's state and, once it ended, when."""

    state: str
    end_date: datetime | None


class Runs(Protocol):
    """What the sweep asks Airflow about the owners of the folders it finds."""

    def dag_run(self, dag_id: str, run_id: str) -> RunState | None:
        """The run's state; None when there is no such run (deleted)."""

    def is_running(self, owner: Owner) -> bool:
        """Whether the owner's task instance is running."""


@dataclass(frozen=True)
class Removal:
    """A folder the sweep removed, why, and the bytes it freed."""

    folder: str
    kind: Kind
    reason: str
    freed: int


def sweep(storage: Storage, runs: Runs, retention: timedelta, now: datetime) -> list[Removal]:
    """Remove every leftover folder of the storage root (see the module's docstring); the removals.

    Folders are listed before their owners are asked about: one made after the listing is not looked
    at, and one listed while its task ran is kept unless that task has ended by the time it is asked.
    """
    removals: list[Removal | None] = []
    for folder in storage.intermediate_folders():
        if (reason := _intermediate_verdict(folder, runs, retention, now)) is not None:
            removals.append(_remove(Kind.INTERMEDIATE, str(folder), reason, partial(storage.remove_intermediates, folder)))
    for scratch in storage.scratch_folders():
        if (reason := _scratch_verdict(scratch, runs, retention, now)) is not None:
            removals.append(_remove(Kind.SCRATCH, str(scratch), reason, partial(_remove_local, scratch)))
    done = [removal for removal in removals if removal is not None]
    folders = f"{len(done)} folder" + ("" if len(done) == 1 else "s")
    log.info("Storage hygiene freed %s in %s of %s", _size(sum(r.freed for r in done)), folders, storage.uri)
    return done


def _remove(kind: Kind, folder: str, reason: str, remove: Callable[[], int | None]) -> Removal | None:
    """Run ``remove`` (the bytes freed; None when the folder went meanwhile). A folder that cannot be
    removed now (permissions, a file system error) is logged and left to the next sweep."""
    try:
        freed = remove()
    except OSError as exc:
        log.warning("Could not remove %s %s (%s): %s", kind, folder, reason, exc)
        return None
    if freed is None:
        return None
    log.info("Removed %s %s: %s freed (%s)", kind, folder, _size(freed), reason)
    return Removal(folder, kind, reason, freed)


def _intermediate_verdict(folder: ObjectStoragePath, runs: Runs, retention: timedelta, now: datetime) -> str | None:
    """Why the run's intermediate folder goes, or None to keep it."""
    owner = Owner.read(folder)
    if owner is None:
        return _untouched(_last_change(folder), retention, now)
    run = runs.dag_run(owner.dag_id, owner.run_id)
    if run is None:
        return f"DAG run {owner.dag_id} {owner.run_id} no longer exists"
    if run.state in ENDED and run.end_date is not None and now - run.end_date > retention:
        return f"DAG run {owner.dag_id} {owner.run_id} ended {run.state} at {run.end_date:%Y-%m-%d %H:%M} UTC, over {_days(retention)} ago"
    return None


def _scratch_verdict(folder: Path, runs: Runs, retention: timedelta, now: datetime) -> str | None:
    """Why the scratch folder goes, or None to keep it."""
    changed = _last_local_change(folder)
    if changed is None:  # removed meanwhile: its task ended
        return None
    owner = Owner.read(folder)
    if owner is None:
        return _untouched(changed, retention, now)
    if now - changed <= SCRATCH_GRACE or runs.is_running(owner):
        return None
    chunk = f"[{owner.map_index}]" if owner.map_index >= 0 else ""
    return f"task {owner.task_id}{chunk} of {owner.dag_id} {owner.run_id} is not running"


def _untouched(changed: datetime | None, retention: timedelta, now: datetime) -> str | None:
    if changed is None or now - changed <= retention:
        return None
    return f"no owner record, unchanged since {changed:%Y-%m-%d %H:%M} UTC, over {_days(retention)} ago"


def _last_change(folder: ObjectStoragePath) -> datetime | None:
    """When anything in the folder last changed (None if it is gone or empty)."""
    if folder.protocol in LOCAL_PROTOCOLS:
        return _last_local_change(Path(folder.path))
    try:
        stamps = [folder.fs.modified(path) for path in folder.fs.find(folder.path)]
    except FileNotFoundError:
        return None
    return max((s if s.tzinfo else s.replace(tzinfo=UTC) for s in stamps), default=None)


def _last_local_change(folder: Path) -> datetime | None:
    """The newest modification time of the folder and everything in it (None if it is gone)."""
    try:
        newest = folder.stat().st_mtime
    except FileNotFoundError:
        return None
    for parent, names, files in os.walk(folder):
        for name in (*names, *files):
            try:
                newest = max(newest, os.lstat(os.path.join(parent, name)).st_mtime)
            except FileNotFoundError:
                continue
    return datetime.fromtimestamp(newest, tz=UTC)


def _remove_local(folder: Path) -> int | None:
    """Remove a local folder; the bytes freed, None if it was gone."""
    if not folder.exists():
        return None
    freed = sum(_file_sizes(folder))
    shutil.rmtree(folder)
    return freed


def _file_sizes(folder: Path) -> Iterable[int]:
    for parent, _, files in os.walk(folder):
        for name in files:
            try:
                yield os.lstat(os.path.join(parent, name)).st_size
            except FileNotFoundError:
                continue


def _days(duration: timedelta) -> str:
    return f"{duration / timedelta(days=1):g} days"


def _size(count: int) -> str:
    return f"{count:,} bytes" if count < 2**20 else f"{count / 2**20:,.1f} MiB ({count:,} bytes)"


class TaskSdkRuns:
    """:class:`Runs` through the Task SDK: tasks reach Airflow's metadata through the API server only.

    :param ti: the hygiene task's own task instance, whose requests the SDK sends.
    """

    def __init__(self, ti: RuntimeTaskInstanceProtocol) -> None:
        self.ti = ti

    def dag_run(self, dag_id: str, run_id: str) -> RunState | None:
        if not self.ti.get_dr_count(dag_id=dag_id, run_ids=[run_id]):
            return None
        # The SDK's own request for another run's details (as asset events fetch their source run).
        from airflow.sdk.execution_time.comms import DagRunResult, GetDagRun
        from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

        run = SUPERVISOR_COMMS.send(GetDagRun(dag_id=dag_id, run_id=run_id))
        assert isinstance(run, DagRunResult), run
        return RunState(run.state.value, run.end_date)

    def is_running(self, owner: Owner) -> bool:
        count = self.ti.get_ti_count(
            dag_id=owner.dag_id, map_index=owner.map_index, task_ids=[owner.task_id], run_ids=[owner.run_id], states=[state.value for state in RUNNING]
        )
        return count > 0


def build_dag() -> DAG:
    """The hygiene DAG; its task reads the storage root and the retention where it runs, as tasks do."""
    with DAG(
        dag_id=DAG_ID,
        schedule=OasisConfig.from_env().hygiene_schedule,
        catchup=False,
        max_active_runs=1,
        default_args={"owner": "oasis", "retries": 1, "retry_delay": timedelta(minutes=5)},
        tags=["oasis-maintenance"],
        doc_md=__doc__,
    ) as dag:

        @task(task_id="remove_leftovers", queue=MAINTENANCE_QUEUE, execution_timeout=timedelta(hours=1))
        def remove_leftovers(**context: Any) -> dict[str, int]:
            config = OasisConfig.from_env()
            removed = sweep(Storage(config.storage_root), TaskSdkRuns(context["ti"]), config.intermediate_retention, datetime.now(UTC))
            return {"folders": len(removed), "bytes_freed": sum(r.freed for r in removed)}

        remove_leftovers()
    return dag

"""An analysis' Oasis status, derived from its newest DAG run and that run's task instances whenever
it is read: it can never be stale (no analysis stuck in RUN_STARTED after its run ended).

Sub-tasks (``status_count``, ``sub_task_list/``) are the run's task instances, one per mapped chunk,
plus the run itself ("record results"), which completes only when the DAG run ends: while the
status is ``*_STARTED`` at least one sub-task is unfinished, which oasislmf's client relies on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from oasis_ops.api.records import AnalysisRecord, RunRecord, records
from oasis_ops.constants import Mode, TaskKind
from oasis_ops.params import GENERATE_AND_RUN, GENERATE_INPUTS, run_analysis_id
from oasis_ops.registry import Model, Registry


class AnalysisStatus(StrEnum):
    NEW = "NEW"
    INPUTS_GENERATION_QUEUED = "INPUTS_GENERATION_QUEUED"
    INPUTS_GENERATION_STARTED = "INPUTS_GENERATION_STARTED"
    INPUTS_GENERATION_ERROR = "INPUTS_GENERATION_ERROR"
    INPUTS_GENERATION_NO_KEYS = "INPUTS_GENERATION_NO_KEYS"
    INPUTS_GENERATION_CANCELLED = "INPUTS_GENERATION_CANCELLED"
    READY = "READY"
    RUN_QUEUED = "RUN_QUEUED"
    RUN_STARTED = "RUN_STARTED"
    RUN_COMPLETED = "RUN_COMPLETED"
    RUN_CANCELLED = "RUN_CANCELLED"
    RUN_ERROR = "RUN_ERROR"


class SubTaskStatus(StrEnum):
    PENDING = "PENDING"
    QUEUED = "QUEUED"
    STARTED = "STARTED"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    ERROR = "ERROR"


#: Airflow task-instance state -> sub-task status.
_SUB_TASK = {
    None: SubTaskStatus.PENDING,
    "scheduled": SubTaskStatus.PENDING,
    "up_for_retry": SubTaskStatus.PENDING,
    "up_for_reschedule": SubTaskStatus.PENDING,
    "deferred": SubTaskStatus.STARTED,
    "queued": SubTaskStatus.QUEUED,
    "running": SubTaskStatus.STARTED,
    "restarting": SubTaskStatus.STARTED,
    "success": SubTaskStatus.COMPLETED,
    "skipped": SubTaskStatus.COMPLETED,
    "failed": SubTaskStatus.ERROR,
    "upstream_failed": SubTaskStatus.CANCELLED,
    "removed": SubTaskStatus.CANCELLED,
}
#: v2 tasks that produce the input files: once they are done, a generate_and_run run is running losses.
_INPUT_TASKS = (TaskKind.PREPARE, TaskKind.LOOKUP_CHUNK, TaskKind.WRITE_INPUT_FILES)
#: Statuses from which each action may start (the Oasis platform's rules).
CAN_GENERATE = frozenset(
    {
        AnalysisStatus.NEW,
        AnalysisStatus.INPUTS_GENERATION_ERROR,
        AnalysisStatus.INPUTS_GENERATION_NO_KEYS,
        AnalysisStatus.INPUTS_GENERATION_CANCELLED,
        AnalysisStatus.READY,
        AnalysisStatus.RUN_COMPLETED,
        AnalysisStatus.RUN_CANCELLED,
        AnalysisStatus.RUN_ERROR,
    }
)
CAN_RUN = frozenset({AnalysisStatus.READY, AnalysisStatus.RUN_COMPLETED, AnalysisStatus.RUN_ERROR, AnalysisStatus.RUN_CANCELLED})
GENERATING = frozenset({AnalysisStatus.INPUTS_GENERATION_QUEUED, AnalysisStatus.INPUTS_GENERATION_STARTED})
RUNNING = frozenset({AnalysisStatus.RUN_QUEUED, AnalysisStatus.RUN_STARTED})


@dataclass(frozen=True)
class SubTask:
    """One task instance of the run (or the run itself), as OasisPlatform lists its sub-tasks."""

    id: int
    name: str
    slug: str
    status: SubTaskStatus
    queue_name: str
    pending_time: datetime | None
    queue_time: datetime | None
    start_time: datetime | None
    end_time: datetime | None
    retry_count: int
    task_id: str


@dataclass(frozen=True)
class RunView:
    """What the DAG run of an analysis says about it."""

    status: AnalysisStatus
    run: RunRecord | None = None
    sub_tasks: tuple[SubTask, ...] = field(default=())
    started: datetime | None = None
    finished: datetime | None = None
    #: Failed task instances: (task id, map index, try number).
    failures: tuple[tuple[str, int, int], ...] = field(default=())

    @property
    def status_count(self) -> dict[str, int]:
        counts = Counter(task.status for task in self.sub_tasks)
        result = {status.value: counts.get(status, 0) for status in SubTaskStatus}
        result["TOTAL"] = len(self.sub_tasks)
        result["TOTAL_IN_QUEUE"] = sum(counts.get(s, 0) for s in (SubTaskStatus.PENDING, SubTaskStatus.QUEUED, SubTaskStatus.STARTED))
        return {"TOTAL_IN_QUEUE": result.pop("TOTAL_IN_QUEUE"), "TOTAL": result.pop("TOTAL"), **result}

    def chunks(self, kind: TaskKind) -> tuple[int, int]:
        """(done, total) of a mapped task kind."""
        mine = [t for t in self.sub_tasks if t.slug.startswith(kind.value.replace("_", "-") + "-")]
        return sum(t.status is SubTaskStatus.COMPLETED for t in mine), len(mine)


def view(analysis: AnalysisRecord) -> RunView:
    """The analysis' status from its newest DAG run (``NEW`` if it never ran)."""
    if not analysis.runs:
        return RunView(AnalysisStatus.NEW)
    run = analysis.runs[0]
    return replace(view_run(run.dag_id, run.run_id, run.action, run.created, _utc(run.cancelled)), run=run)


def view_run(dag_id: str, run_id: str, action: str, created: datetime, cancelled: datetime | None = None) -> RunView:
    """What one DAG run (of ``action``, cancelled through the API at ``cancelled``) says about its
    analysis: an API analysis' newest run (:func:`view`), or any run of an Oasis DAG (the results page)."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        dag_run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        tis = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
        ).all()
        state = str(dag_run.state) if dag_run is not None else "failed"
        started, finished = (dag_run.start_date, dag_run.end_date) if dag_run is not None else (None, None)
        ordered = sorted(tis, key=lambda t: (t.start_date is None, t.start_date or created, t.task_id, t.map_index))
        sub_tasks = [_sub_task(ti, cancelled) for ti in ordered]
        failures = tuple((ti.task_id, ti.map_index, ti.try_number) for ti in tis if ti.state == "failed")
        inputs_done = _inputs_done(tis, action)
        any_started = any(ti.state not in (None, "scheduled", "queued") for ti in tis)
    finished_run = state in ("success", "failed")
    # A cancelled run is over for its analysis when it is cancelled: its tasks stop seconds later.
    finished = cancelled or (finished if finished_run else None)
    record = SubTask(
        id=len(sub_tasks) + 1,
        name="Record results",
        slug="record-results",
        status=(
            SubTaskStatus.CANCELLED if cancelled
            else SubTaskStatus.COMPLETED if state == "success"
            else SubTaskStatus.ERROR if finished_run
            else SubTaskStatus.PENDING
        ),
        queue_name="",
        pending_time=created,
        queue_time=None,
        start_time=None,
        end_time=finished,
        retry_count=0,
        task_id=run_id,
    )
    sub_tasks = [*(_with_id(task, i + 1) for i, task in enumerate(sub_tasks)), record]
    status = _status(action, cancelled, state, any_started, inputs_done)
    return RunView(status, None, tuple(sub_tasks), started, finished, failures)


@dataclass(frozen=True)
class DagRunAnalysis:
    """A DAG run of one of the registry's DAGs and the analysis it works for, however it was started:
    through the Oasis API (``record`` is that analysis) or natively (UI, REST, schedule, asset)."""

    dag_id: str
    run_id: str
    model: Model
    mode: Mode
    #: The run's parameters: its scheduled analysis' fixed ones, overridden by the run's conf.
    params: Mapping[str, Any]
    #: Its files are ``analyses/<analysis_id>/`` in the storage root.
    analysis_id: str
    created: datetime
    record: AnalysisRecord | None = None
    api_run: RunRecord | None = None

    @property
    def action(self) -> str:
        return str(self.params.get("action") or GENERATE_AND_RUN)

    def view(self) -> RunView:
        """The analysis' status, progress and failures as this run tells them."""
        cancelled = _utc(self.api_run.cancelled) if self.api_run else None
        return view_run(self.dag_id, self.run_id, self.action, self.created, cancelled)


def dag_run_analyses(registry: Registry, dag_id: str | None = None, run_id: str | None = None, limit: int = 200) -> list[DagRunAnalysis]:
    """The registry's DAG runs (of ``dag_id``, the one ``run_id``), newest first, at most ``limit``."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    dags = {d: (model, *found) for model in registry.models for d, found in model.dags().items()}
    wanted = [dag_id] if dag_id is not None else list(dags)
    query = select(DagRun).where(DagRun.dag_id.in_([d for d in wanted if d in dags]))
    if run_id is not None:
        query = query.where(DagRun.run_id == run_id)
    with create_session() as session:
        runs = [(r.dag_id, r.run_id, dict(r.conf or {}), r.queued_at or r.run_after) for r in session.scalars(query.order_by(DagRun.id.desc()).limit(limit))]
    api_runs = {(run.dag_id, run.run_id): (analysis, run) for analysis in records().list_analyses() for run in analysis.runs} if runs else {}
    found = []
    for dag, run, conf, created in runs:
        model, mode, scheduled = dags[dag]
        params = {**(scheduled.params if scheduled else {}), **conf}
        record, api_run = api_runs.get((dag, run), (None, None))
        found.append(DagRunAnalysis(dag, run, model, mode, params, run_analysis_id(params, run), _utc(created) or datetime.now(UTC), record, api_run))
    return found


def _inputs_done(tis: Sequence[Any], action: str) -> bool:
    if action != GENERATE_AND_RUN:
        return False
    inputs = [ti for ti in tis if ti.task_id in {k.value for k in _INPUT_TASKS}]
    return bool(inputs) and all(ti.state in ("success", "skipped") for ti in inputs)


def _status(action: str, cancelled: datetime | None, state: str, any_started: bool, inputs_done: bool) -> AnalysisStatus:
    generating = action == GENERATE_INPUTS or (action == GENERATE_AND_RUN and not inputs_done)
    if cancelled is not None:
        return AnalysisStatus.INPUTS_GENERATION_CANCELLED if generating else AnalysisStatus.RUN_CANCELLED
    if state == "success":
        return AnalysisStatus.READY if action == GENERATE_INPUTS else AnalysisStatus.RUN_COMPLETED
    if state == "failed":
        return AnalysisStatus.INPUTS_GENERATION_ERROR if generating else AnalysisStatus.RUN_ERROR
    if not any_started and not inputs_done:
        return AnalysisStatus.INPUTS_GENERATION_QUEUED if generating else AnalysisStatus.RUN_QUEUED
    return AnalysisStatus.INPUTS_GENERATION_STARTED if generating else AnalysisStatus.RUN_STARTED


def _sub_task(ti: Any, cancelled: datetime | None) -> SubTask:
    """One task instance as a sub-task; in a cancelled run, those still open when it was cancelled
    (stopped or skipped by the cancel) are ``CANCELLED``."""
    slug = ti.task_id.replace("_", "-") + (f"-{ti.map_index}" if ti.map_index >= 0 else "")
    name = ti.task_id.replace("_", " ").capitalize() + (f" {ti.map_index + 1}" if ti.map_index >= 0 else "")
    status = _SUB_TASK.get(str(ti.state) if ti.state else None, SubTaskStatus.PENDING)
    ended = _utc(ti.end_date)
    if cancelled and ti.state != "success" and (ended is None or ended >= cancelled):
        status = SubTaskStatus.CANCELLED
    return SubTask(
        id=0,
        name=name,
        slug=slug,
        status=status,
        queue_name=ti.queue or "",
        pending_time=ti.scheduled_dttm,
        queue_time=ti.queued_dttm,
        start_time=ti.start_date,
        end_time=ti.end_date,
        retry_count=max(ti.try_number - 1, 0),
        task_id=str(ti.id),
    )


def _utc(value: datetime | None) -> datetime | None:
    """A stored time as UTC (SQLite gives the records' times back without their zone)."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _with_id(task: SubTask, index: int) -> SubTask:
    return replace(task, id=index)

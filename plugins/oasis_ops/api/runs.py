"""Starting and cancelling an analysis' DAG runs from the api-server, as Airflow's own REST API does."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

from oasis_ops.api.records import AnalysisRecord, RunRecord, records
from oasis_ops.config import OasisConfig
from oasis_ops.constants import Mode
from oasis_ops.registry import Model
from oasis_ops.storage import Storage

log = logging.getLogger(__name__)
#: Longest a cancelled run's intermediate files are watched for removal (its tasks stop within seconds).
CANCEL_GRACE_SECONDS = 120
#: How long a cancelled run's intermediate files must stay gone before they are deemed removed: more
#: than a stopping task takes (a heartbeat interval, then SIGINT, SIGTERM, SIGKILL 5 s apart).
CANCEL_QUIET_SECONDS = 30


def trigger(analysis: AnalysisRecord, model: Model, mode: Mode, action: str, conf: Mapping[str, Any], user: str) -> RunRecord:
    """Create the DAG run (queued) and record it for the analysis; returns the new run record."""
    from airflow.api_fastapi.common.dagbag import create_dag_bag, get_latest_version_of_dag
    from airflow.api_fastapi.core_api.datamodels.dag_run import TriggerDAGRunPostBody
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    dag_id = model.dag_id(mode)
    run_id = f"oasis_api__{analysis.id}__{action}__{uuid.uuid4().hex[:8]}"
    with create_session() as session:
        dag = get_latest_version_of_dag(create_dag_bag(), dag_id, session)
        # As POST /api/v2/dags/{dag_id}/dagRuns: the conf is validated against the DAG's params.
        params = TriggerDAGRunPostBody(dag_run_id=run_id, logical_date=None, conf=dict(conf)).validate_context(dag)
        dag.create_dagrun(
            run_id=params["run_id"],
            logical_date=params["logical_date"],
            data_interval=params["data_interval"],
            run_after=params["run_after"],
            conf=params["conf"],
            run_type=DagRunType.MANUAL,
            triggered_by=DagRunTriggeredByType.REST_API,
            triggering_user_name=user,
            state=DagRunState.QUEUED,
            partition_key=params["partition_key"],
            partition_date=params["partition_date"],
            session=session,
        )
    records().add_run(analysis.id, mode.value, action, dag_id, run_id)
    return records().analysis(analysis.id).runs[0]  # type: ignore[union-attr]


def cancel(run: RunRecord, storage_id: str) -> None:
    """Record the cancellation, end the DAG run failed (:func:`fail_dag_run`) and remove its intermediate
    files as its tasks stop (a cancelled run is not a failure to resume)."""
    records().mark_cancelled(run)
    fail_dag_run(run.dag_id, run.run_id)
    threading.Thread(target=_remove_intermediates, args=(run, storage_id), daemon=True, name="oasis-cancel").start()


def fail_dag_run(dag_id: str, run_id: str) -> None:
    """End an unfinished DAG run failed now: its running tasks failed (Airflow stops their processes
    within seconds), the others ``upstream_failed``.

    Not Airflow's ``set_dag_run_state_to_failed``: it skips the tasks that have not started, so a
    scheduler loop that read the run just before finds only skipped leaves and ends the run ``success``.
    With ``upstream_failed`` leaves, any evaluation of the run's state gives ``failed``.
    """
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, State, TaskInstanceState
    from sqlalchemy import or_, select

    active = (TaskInstanceState.RUNNING, TaskInstanceState.DEFERRED, TaskInstanceState.RESTARTING, TaskInstanceState.UP_FOR_RESCHEDULE)
    with create_session() as session:
        dag_run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        if dag_run is None or dag_run.state in State.finished_dr_states:
            return
        left = session.scalars(
            select(TaskInstance).where(
                TaskInstance.dag_id == dag_id,
                TaskInstance.run_id == run_id,
                or_(TaskInstance.state.is_(None), TaskInstance.state.not_in(State.finished)),
            )
        ).all()
        for ti in left:
            ti.set_state(TaskInstanceState.FAILED if ti.state in active else TaskInstanceState.UPSTREAM_FAILED, session=session)
        dag_run.set_state(DagRunState.FAILED)
        session.merge(dag_run)


def _remove_intermediates(run: RunRecord, storage_id: str) -> None:
    """Remove the cancelled run's intermediate files (and its analysis' folder of them once empty).

    Marking the run failed ends its task instances at once, but their processes stop only when their
    next heartbeat is refused (seconds later) and, while they stop, write logs into these files: so
    they are removed again until nothing has reappeared for :data:`CANCEL_QUIET_SECONDS` (at most
    :data:`CANCEL_GRACE_SECONDS`)."""
    deadline = time.monotonic() + CANCEL_GRACE_SECONDS
    storage = Storage(OasisConfig.from_env().storage_root)
    intermediate = storage.intermediate(storage_id, run.run_id)
    quiet_since = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < CANCEL_QUIET_SECONDS:
        try:
            if storage.remove_intermediates(intermediate) is not None:
                log.info("Cancelled run %s: removed %s", run.run_id, intermediate)
                quiet_since = time.monotonic()
        except OSError as exc:  # a stopping task was writing into it: next round
            log.warning("Cancelled run %s: could not remove %s yet: %s", run.run_id, intermediate, exc)
            quiet_since = time.monotonic()
        time.sleep(1)

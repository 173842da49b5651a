"""Cancelling a run (the Oasis API's cancel) against a scheduler loop that read the run just before.

The Oasis API stack test cancels a real run mid loss chunk; this one makes the race it can lose
deterministic: the scheduler holds the run as ``running``, the cancel ends it, then the scheduler
evaluates the run's state from the task instances the cancel left.
"""

from __future__ import annotations

import json
import subprocess

from harness.airflow_home import BIN
from harness.piwind import V2_DAG

#: Fails the run while a scheduler session holds it, then lets that session evaluate the run's state;
#: prints the run's state and its task instances' states as the database has them afterwards.
CANCEL_BEHIND_THE_SCHEDULER = """
import json, sys
from airflow.api_fastapi.common.dagbag import create_dag_bag, get_latest_version_of_dag
from airflow.models.dagrun import DagRun
from airflow.models.taskinstance import TaskInstance
from airflow.utils.session import create_session
from sqlalchemy import select
from oasis_ops.api.runs import fail_dag_run

dag_id, run_id = sys.argv[1:]
with create_session() as scheduler:
    dag = get_latest_version_of_dag(create_dag_bag(), dag_id, scheduler)
    run = scheduler.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
    assert run.state == "running", run.state
    fail_dag_run(dag_id, run_id)
    run.dag = dag
    run.update_state(session=scheduler)
with create_session() as session:
    state = session.scalar(select(DagRun.state).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
    tis = session.execute(select(TaskInstance.task_id, TaskInstance.state).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id))
    print(json.dumps({"run": str(state), "tasks": {task: str(s) for task, s in tis}}))
"""


def test_a_cancelled_run_stays_failed_when_the_scheduler_evaluates_it_from_an_earlier_read(piwind_dags_airflow):
    airflow = piwind_dags_airflow
    tasks = {"prepare": [-1, "success"], "lookup_chunk": [0, "success"], "write_input_files": [-1, "success"],
             "loss_chunk": [0, "running"]}
    airflow.make_runs(V2_DAG, [["cancelled", "running", None, tasks]])

    result = subprocess.run(
        [str(BIN / "python"), "-c", CANCEL_BEHIND_THE_SCHEDULER, V2_DAG, "cancelled"],
        env=airflow.env(), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    after = json.loads(result.stdout.strip().splitlines()[-1])

    # Airflow's own "mark failed" skips what has not started: the leaves would then say "success".
    assert after["run"] == "failed", after
    assert after["tasks"]["loss_chunk"] == "failed"
    assert after["tasks"]["aggregate"] == "upstream_failed", after
    assert after["tasks"]["prepare"] == "success"

"""Embedded Airflow homes (SQLite, LocalExecutor, the product's own ``airflow.cfg``) and DAG runs
through ``airflow dags test``: a run the way a user starts one from the CLI, in a throw-away home so
that tests never touch the repository's ``.airflow/``."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

REPO = Path(__file__).resolve().parents[1]
#: The venv's scripts (``airflow``, ``oasislmf``, ...), beside the interpreter running the harness.
BIN = Path(sys.executable).parent
#: Longest a single ``airflow dags test`` may take (a full PiWind analysis takes about two minutes).
DAGS_TEST_TIMEOUT = 1800


def clean_environ() -> dict[str, str]:
    """This process' environment without ``AIRFLOW__*`` / ``OASIS_*`` settings, so that a developer's
    own configuration (or the Makefile's) never leaks into a throw-away Airflow."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "OASIS_"))}


def write_airflow_cfg(home: Path, env: Mapping[str, str]) -> Path:
    """The product's embedded ``airflow.cfg`` (``python -m oasis_ops.deploy.home``) in ``home``."""
    home.mkdir(parents=True, exist_ok=True)
    command = [str(BIN / "python"), "-m", "oasis_ops.deploy.home", str(home)]
    cfg = subprocess.run(command, env=dict(env), check=True, capture_output=True, text=True)
    path = home / "airflow.cfg"
    path.write_text(cfg.stdout)
    return path


def output_tail(result: subprocess.CompletedProcess, chars: int = 8000) -> str:
    """The end of a command's stdout and stderr: enough of a failed run's log to see why."""
    return f"{result.stdout[-chars:]}\n--- stderr ---\n{result.stderr[-chars:]}"


class TaskRow(NamedTuple):
    """A task instance of a DAG run as the UI's grid lists it."""

    task_id: str
    map_index: int
    label: str | None  # rendered_map_index, e.g. "loss chunk 2/4"
    state: str | None


#: Creates DAG runs in the home's metadata database: ``[run_id, state, ended days ago or null,
#: {task_id: [map_index, state]}]`` per run (``map_index`` >= 0 makes the instance a mapped one).
MAKE_RUNS = """
import json, sys
from datetime import timedelta
from airflow.api_fastapi.common.dagbag import create_dag_bag, get_latest_version_of_dag
from airflow.utils import timezone
from airflow.utils.session import create_session
from airflow.utils.state import DagRunState
from airflow.utils.types import DagRunTriggeredByType, DagRunType

dag_id, runs = sys.argv[1], json.loads(sys.argv[2])
now = timezone.utcnow()
with create_session() as session:
    dag = get_latest_version_of_dag(create_dag_bag(), dag_id, session)
    for run_id, state, ended_days_ago, tasks in runs:
        run = dag.create_dagrun(run_id=run_id, run_after=now, conf={"analysis_id": "a"}, run_type=DagRunType.MANUAL,
                                triggered_by=DagRunTriggeredByType.TEST, state=DagRunState.RUNNING, session=session)
        session.flush()
        for ti in run.get_task_instances(session=session):
            if ti.task_id in tasks:
                ti.map_index, ti.state = tasks[ti.task_id]
        run.state = state
        run.end_date = None if ended_days_ago is None else now - timedelta(days=ended_days_ago)
        session.merge(run)
"""


@dataclass(frozen=True)
class AirflowHome:
    """A migrated Airflow home with its registry, storage root and the models' pools."""

    home: Path
    registry: Path
    storage: Path

    def env(self) -> dict[str, str]:
        return clean_environ() | {
            "AIRFLOW_HOME": str(self.home),
            "OASIS_MODEL_REGISTRY": str(self.registry),
            "OASIS_STORAGE_ROOT": str(self.storage),
            "PYTHONPATH": str(REPO / "plugins"),
            # As on the project's workers: oasislmf orders some input-file columns by set iteration.
            "PYTHONHASHSEED": "0",
        }

    @classmethod
    def create(cls, home: Path, registry: Path, storage: Path) -> AirflowHome:
        """``airflow.cfg``, ``airflow db migrate`` and the pools, as ``make setup`` does for ``.airflow/``."""
        airflow_home = cls(home, registry, storage)
        env = airflow_home.env()
        write_airflow_cfg(home, env)
        subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True)
        subprocess.run([str(BIN / "python"), "-m", "oasis_ops.deploy.pools"], env=env, check=True, capture_output=True)
        return airflow_home

    def analysis(self, analysis_id: str) -> Path:
        """``analyses/<analysis_id>/`` in the storage root: where a run publishes input, output and logs."""
        return self.storage / "analyses" / analysis_id

    def dags_test(self, dag_id: str, conf: Mapping[str, Any]) -> subprocess.CompletedProcess:
        """Trigger and run one DAG run in process. Exit status 0: the run succeeded; 1 with
        ``DagRun failed`` on stderr: it ran and failed; 1 with a traceback: it was refused."""
        return subprocess.run(
            [str(BIN / "airflow"), "dags", "test", dag_id, "-c", json.dumps(conf)],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=DAGS_TEST_TIMEOUT,
        )

    def dags_test_ok(self, dag_id: str, conf: Mapping[str, Any]) -> subprocess.CompletedProcess:
        """:meth:`dags_test`, failing the caller with the run's log when the run did not succeed."""
        result = self.dags_test(dag_id, conf)
        assert result.returncode == 0, output_tail(result)
        return result

    def make_runs(self, dag_id: str, runs: list[list[Any]]) -> None:
        """DAG runs of ``dag_id`` made in the metadata database as :data:`MAKE_RUNS` describes."""
        subprocess.run([str(BIN / "python"), "-c", MAKE_RUNS, dag_id, json.dumps(runs)], env=self.env(), check=True, capture_output=True, timeout=300)

    def task_instances(self, dag_id: str) -> list[TaskRow]:
        """The task instances of the DAG's latest run, by task id and map index."""
        with sqlite3.connect(self.home / "airflow.db") as db:
            (run_id,) = db.execute(
                "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
            ).fetchone()
            rows = db.execute(
                "SELECT task_id, map_index, rendered_map_index, state FROM task_instance "
                "WHERE dag_id = ? AND run_id = ? ORDER BY task_id, map_index",
                (dag_id, run_id),
            ).fetchall()
        return [TaskRow(*row) for row in rows]

"""Run DAGs the way a user does: ``airflow dags test`` against a migrated embedded Airflow home."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class AirflowHome:
    home: Path
    registry: Path
    storage: Path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "OASIS_"))}
        env.update(
            AIRFLOW_HOME=str(self.home),
            OASIS_MODEL_REGISTRY=str(self.registry),
            OASIS_STORAGE_ROOT=str(self.storage),
            PYTHONPATH=str(REPO / "plugins"),
            # As on the project's workers: oasislmf orders some input-file columns by set iteration.
            PYTHONHASHSEED="0",
        )
        return env

    @classmethod
    def create(cls, home: Path, registry: Path, storage: Path) -> AirflowHome:
        airflow_home = cls(home, registry, storage)
        home.mkdir(parents=True, exist_ok=True)
        env = airflow_home.env()
        cfg = subprocess.run([BIN / "python", "-m", "oasis_ops.home", str(home)], env=env, check=True, capture_output=True, text=True)
        (home / "airflow.cfg").write_text(cfg.stdout)
        subprocess.run([BIN / "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
        subprocess.run([BIN / "python", "-m", "oasis_ops.pools"], env=env, check=True, capture_output=True)
        return airflow_home

    def dags_test(self, dag_id: str, conf: dict) -> subprocess.CompletedProcess:
        """Trigger and run one DAG run in process; returncode 0 means the run succeeded."""
        return subprocess.run(
            [BIN / "airflow", "dags", "test", dag_id, "-c", json.dumps(conf)],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=1800,
        )

    def task_instances(self, dag_id: str) -> list[tuple[str, int, str | None, str]]:
        """(task_id, map_index, rendered_map_index, state) of the DAG's latest run, as the UI lists them."""
        with sqlite3.connect(self.home / "airflow.db") as db:
            (run_id,) = db.execute(
                "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
            ).fetchone()
            return db.execute(
                "SELECT task_id, map_index, rendered_map_index, state FROM task_instance "
                "WHERE dag_id = ? AND run_id = ? ORDER BY task_id, map_index",
                (dag_id, run_id),
            ).fetchall()

"""A real Airflow on the embedded default: api-server, scheduler and dag-processor as processes,
LocalExecutor on SQLite; the models' pools limit what runs at once."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from airflow_cli import BIN, AirflowHome

COMPONENTS = (("api-server",), ("scheduler",), ("dag-processor",))
FINISHED = ("success", "failed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class AirflowStack:
    airflow: AirflowHome
    dags_folder: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: list[subprocess.Popen] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        port = self.extra_env.get("AIRFLOW__API__PORT") or str(free_port())
        self.extra_env["AIRFLOW__API__PORT"] = port
        return self.airflow.env() | {
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        } | self.extra_env

    def start(self, dag_ids: list[str], timeout: float = 180) -> None:
        env = self.env()
        logs = self.airflow.home / "stack-logs"
        logs.mkdir(exist_ok=True)
        for command in COMPONENTS:
            out = (logs / f"{command[0]}.log").open("w")
            self.processes.append(subprocess.Popen([BIN / "airflow", *command], env=env, stdout=out, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + timeout
        while set(dag_ids) - set(self.parsed_dags()) or not self.api_is_up():
            if time.monotonic() > deadline:
                raise TimeoutError(f"DAGs {dag_ids} not parsed or API server not up; see {logs}")
            time.sleep(2)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.extra_env['AIRFLOW__API__PORT']}"

    def api_is_up(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.api_url}/api/v2/monitor/health", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()

    def query(self, sql: str, args: tuple) -> list[tuple]:
        with sqlite3.connect(self.airflow.home / "airflow.db", timeout=30) as db:
            return db.execute(sql, args).fetchall()

    def parsed_dags(self) -> list[str]:
        try:
            return [row[0] for row in self.query("SELECT dag_id FROM serialized_dag", ())]
        except sqlite3.OperationalError:
            return []

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        result = subprocess.run([BIN / "airflow", *args], env=self.env(), capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        rows = self.query("SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ?", (dag_id, run_id))
        return rows[0][0] if rows else None

    def wait(self, dag_id: str, run_id: str, timeout: float = 900) -> str:
        deadline = time.monotonic() + timeout
        while (state := self.run_state(dag_id, run_id)) not in FINISHED:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id} {run_id} still {state}")
            time.sleep(2)
        return state

    def wait_for_task_state(self, dag_id: str, run_id: str, state: str, task_id: str = "%", timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        sql = "SELECT 1 FROM task_instance WHERE dag_id = ? AND run_id = ? AND state = ? AND task_id LIKE ?"
        while not self.query(sql, (dag_id, run_id, state, task_id)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no task of {dag_id} {run_id} reached {state}")
            time.sleep(0.5)

    def task_instances(self, dag_id: str, run_id: str) -> list[tuple]:
        """(task_id, map_index, state, try_number, priority_weight, start_date), in start order."""
        return self.query(
            "SELECT task_id, map_index, state, try_number, priority_weight, start_date FROM task_instance "
            "WHERE dag_id = ? AND run_id = ? ORDER BY start_date",
            (dag_id, run_id),
        )

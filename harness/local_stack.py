"""A real Airflow on an embedded home: api-server, scheduler and dag-processor as processes, the
LocalExecutor on SQLite, the models' pools. What the scheduler decides (priorities, pools, clearing a
failed task) only shows on such a stack, which ``airflow dags test`` does not run."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from harness.airflow_home import BIN, AirflowHome
from harness.polling import poll_until
from harness.rest import RestClient

COMPONENTS = ("api-server", "scheduler", "dag-processor")


def free_port() -> int:
    """A TCP port nothing listens on now: several stacks (or a developer's Airflow) may share the machine."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalStack:
    """The stack's processes on ``airflow``'s home, parsing ``dags_folder``; the REST API's user is
    ``admin`` with ``password``. ``extra_env`` reaches every process (and the DAG files they parse)."""

    airflow: AirflowHome
    dags_folder: Path
    password: str
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def logs(self) -> Path:
        return self.airflow.home / "stack-logs"

    @property
    def passwords_file(self) -> Path:
        return self.airflow.home / "passwords.json"

    @property
    def rest(self) -> RestClient:
        return RestClient(f"http://127.0.0.1:{self.port}", self.password)

    def env(self) -> dict[str, str]:
        return self.airflow.env() | {
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
            # Seconds, not the defaults' tens of seconds: tests wait for the scheduler and the parser.
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        } | self.extra_env

    def start(self, dag_ids: list[str], timeout: float = 180) -> None:
        """Start the processes and return once ``dag_ids`` are parsed and the API answers."""
        self.passwords_file.write_text(json.dumps({"admin": self.password}))
        self.logs.mkdir(exist_ok=True)
        env = self.env()
        for component in COMPONENTS:
            with (self.logs / f"{component}.log").open("w") as out:
                self.processes.append(subprocess.Popen([str(BIN / "airflow"), component], env=env, stdout=out, stderr=subprocess.STDOUT))
        rest = self.rest

        def ready() -> bool:
            dead = [c for c, p in zip(COMPONENTS, self.processes, strict=True) if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{dead} exited at start-up; see {self.logs}")
            return not set(dag_ids) - self.parsed_dags() and rest.is_up()

        try:
            poll_until(ready, timeout, f"DAGs {dag_ids} not parsed or API server not up; see {self.logs}")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def parsed_dags(self) -> set[str]:
        """DAG ids the dag-processor has serialized (a trigger before that is refused)."""
        try:
            with sqlite3.connect(self.airflow.home / "airflow.db", timeout=30) as db:
                return {row[0] for row in db.execute("SELECT dag_id FROM serialized_dag")}
        except sqlite3.OperationalError:  # not migrated yet, or locked
            return set()

"""The production stack (``oasis_ops.deploy.stack``) started by the product's own launcher, as
``make celery-up`` does: api-server, scheduler, dag-processor, triggerer and a v1 and a v2 Celery
worker per model, on PostgreSQL and Redis on localhost. Each stack gets its own database and Redis
database, so that it starts from nothing and leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

from harness.airflow_home import REPO, clean_environ, write_airflow_cfg
from harness.local_stack import free_port
from harness.rest import RestClient

POSTGRES = "postgresql+psycopg2://postgres@localhost:5432"
LAUNCHER = "oasis_ops.deploy.celery_local"


#: The key by which a stack claims its Redis database until ``down()``.
CLAIM = "oasis-test-stack"


def _redis(db: int, *command: str) -> str:
    return subprocess.run(["redis-cli", "-n", str(db), *command], check=True, capture_output=True, text=True, timeout=30).stdout.strip()


def unused_redis_db() -> int:
    """An empty Redis database (1-15; 0 is left to the developer's own use), claimed at once: two
    stacks sharing one would consume each other's queued tasks."""
    for db in range(1, 16):
        if _redis(db, "dbsize") == "0" and _redis(db, "set", CLAIM, "1", "NX") == "OK":
            return db
    raise RuntimeError("every Redis database 1-15 holds keys: stop other stacks or flush one (redis-cli -n <db> flushdb)")


class CeleryStack:
    """A Celery stack serving ``registry``'s models on ``storage``, its state in ``base``."""

    def __init__(self, base: Path, registry: Path, storage: Path, password: str, redis_db: int | None = None) -> None:
        self.base, self.registry, self.storage, self.password = base, registry, storage, password
        self.redis_db = unused_redis_db() if redis_db is None else redis_db
        self.port, self.database = free_port(), f"oasis_test_{uuid.uuid4().hex[:8]}"
        self.env = clean_environ() | {
            "AIRFLOW_HOME": str(self.home),
            "PYTHONPATH": str(REPO / "plugins"),
            "OASIS_MODEL_REGISTRY": str(registry),
            "OASIS_STORAGE_ROOT": str(storage),
            "OASIS_ADMIN_PASSWORD": password,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"{POSTGRES}/{self.database}",
            "AIRFLOW__CELERY__BROKER_URL": f"redis://localhost:6379/{self.redis_db}",
            "AIRFLOW__API__PORT": str(self.port),
            # A lost worker's task is noticed within seconds rather than the default 5 minutes.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        }

    @property
    def home(self) -> Path:
        return self.base / "airflow"

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def oasis_url(self) -> str:
        """The ``--server-url`` of oasislmf's client."""
        return f"{self.url}/oasis"

    @property
    def rest(self) -> RestClient:
        return RestClient(self.url, self.password)

    def launcher(self, *args: str) -> subprocess.CompletedProcess:
        """``python -m oasis_ops.deploy.celery_local <args>`` (what ``make celery-up`` runs) in this stack's environment."""
        result = subprocess.run([sys.executable, "-m", LAUNCHER, *args], env=self.env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{LAUNCHER} {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result

    def up(self) -> None:
        """An empty Redis database, the embedded ``airflow.cfg``, then ``make celery-up`` as a user runs
        it (the launcher creates and migrates the stack's database, which does not exist yet)."""
        _redis(self.redis_db, "flushdb")
        _redis(self.redis_db, "set", CLAIM, "1")
        write_airflow_cfg(self.home, self.env)
        result = subprocess.run(
            ["make", "celery-up", f"AIRFLOW_HOME={self.home}"], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, f"make celery-up failed:\n{result.stdout}\n{result.stderr}"

    def down(self) -> None:
        """``celery_local down``, then drop the stack's database and free its Redis database."""
        try:
            self.launcher("down")
        finally:
            _redis(self.redis_db, "flushdb")
            from sqlalchemy import create_engine, text

            engine = create_engine(f"{POSTGRES}/postgres", isolation_level="AUTOCOMMIT")
            with engine.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))
            engine.dispose()

    def add_worker(self, name: str, queue: str, concurrency: int, cores: Sequence[int] = ()) -> None:
        """One more Celery worker on ``queue``, as ``docker compose --scale`` would add, through the launcher's own code.

        With ``cores`` the worker and every task it runs may use those CPUs only (``taskset -c``: the
        affinity is inherited by every process it starts), so that on one host it stands for a machine
        of that many cores.
        """
        command = ("celery", "worker", "--queues", queue, "--concurrency", str(concurrency))
        code = (
            "from oasis_ops.deploy.celery_local import start_service\n"
            "from oasis_ops.deploy.stack import Service\n"
            f"start_service(Service({name!r}, {command!r}, {queue!r}, {concurrency}))"
        )
        pinned = ["taskset", "-c", ",".join(str(core) for core in cores)] if cores else []
        subprocess.run([*pinned, sys.executable, "-c", code], env=self.env, check=True, timeout=120)

    def stop_service(self, name: str) -> None:
        """Stop one service (a worker: with the tasks it runs) through the launcher's own code, so that
        ``down()`` no longer has it to stop."""
        code = f"from oasis_ops.deploy.celery_local import stop_service\nstop_service({name!r})"
        subprocess.run([sys.executable, "-c", code], env=self.env, check=True, timeout=120)

    def restart(self, service: str) -> None:
        self.launcher("restart", service)

    def pids(self) -> dict[str, int]:
        """Service name -> process group id, as the launcher recorded them."""
        return json.loads((self.home / "celery" / "pids.json").read_text())

    def kill(self, service: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Signal a service's whole process group (a worker and the task processes it forked)."""
        os.killpg(self.pids()[service], sig)

    def workers_ready(self) -> bool:
        """Every Celery worker logged ``ready.``: done importing (oasislmf's preload included) and consuming."""
        return all(" ready." in self.log(name) for name in self.pids() if name.startswith("worker-"))

    def log(self, service: str) -> str:
        return (self.home / "celery" / "logs" / f"{service}.log").read_text()

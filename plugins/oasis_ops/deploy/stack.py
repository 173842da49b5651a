"""The production stack's Airflow services: the one source of truth for ``docker-compose.yaml``
(``python -m oasis_ops.deploy.compose``) and for ``make celery-up`` / ``make celery-down``, which
run the same services as local processes.

Core services: api-server, scheduler, dag-processor, triggerer. Per registered model: a v1 Celery
worker on ``<supplier>-<model>-<version>`` taking one job at a time, and a v2 worker on the ``-v2``
queue running ``v2_worker_concurrency`` tasks at once (models on the KubernetesExecutor get none). One
maintenance worker on Airflow's default queue runs the storage hygiene DAG (and DAGs users add).
"""

from __future__ import annotations

from dataclasses import dataclass

from oasis_ops.constants import MAINTENANCE_QUEUE, Mode
from oasis_ops.registry import Model, Registry

#: Where Airflow reads the Celery configuration: its own plus the oasislmf preload of every worker.
CELERY_CONFIG_OPTIONS = "oasis_ops.deploy.celery_config.CELERY_CONFIG"

#: Seconds between a running task's heartbeats (Airflow's default: 5). Airflow 3.3's task supervisor
#: sometimes sees its task process' output end a moment before the process has exited, and then waits
#: for its next heartbeat to notice the exit, holding the worker slot meanwhile (seen after loss chunks:
#: the slot freed 5.0 s after the task's last log line, tasks waiting 2.3-2.8 s on the queue for it).
#: Also the embedded stack's (``oasis_ops.deploy.home``).
MIN_HEARTBEAT_INTERVAL = 2

#: Airflow settings every service shares (the CeleryExecutor; one task per worker slot, acknowledged
#: when done so that a lost worker's task is redelivered, as on the Oasis platform).
SHARED_SETTINGS = {
    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
    "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
    "AIRFLOW__CELERY__TASK_ACKS_LATE": "True",
    # Workers import oasislmf once, before forking their pool, instead of in every task.
    "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": CELERY_CONFIG_OPTIONS,
    # A task whose worker died (machine lost, stack restarted) is noticed by its missing heartbeats, but
    # only once a live scheduler owns it: one restarted shortly after the old one stopped adopts it at
    # the next orphan check (default every 5 minutes), then fails or retries it after the heartbeat
    # timeout (5 minutes), freeing its pool slot.
    "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "60",
    # See MIN_HEARTBEAT_INTERVAL: a worker slot freed at most 2 s, not 5 s, after its task ended.
    "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": str(MIN_HEARTBEAT_INTERVAL),
    "PYTHONHASHSEED": "0",
}
CORE_SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")


@dataclass(frozen=True)
class Service:
    """One Airflow process: ``airflow <command>``."""

    name: str
    command: tuple[str, ...]
    #: The Celery queue a worker serves (None for core services).
    queue: str | None = None
    concurrency: int | None = None


def worker(model: Model, mode: Mode) -> Service:
    """The Celery worker of the model's ``mode`` queue, ``worker-<queue as a slug>``."""
    queue, concurrency = model.queue(mode), model.worker_concurrency(mode)
    command = ("celery", "worker", "--queues", queue, "--concurrency", str(concurrency))
    return Service(f"worker-{model.worker_name(mode)}", command, queue, concurrency)


def maintenance_worker() -> Service:
    """The worker of :data:`MAINTENANCE_QUEUE`: one task at a time, its work is light and rare."""
    return Service("worker-maintenance", ("celery", "worker", "--queues", MAINTENANCE_QUEUE, "--concurrency", "1"), MAINTENANCE_QUEUE, 1)


def model_workers(model: Model) -> list[Service]:
    """The model's v1 and v2 Celery workers (none when its tasks run on Kubernetes)."""
    return [] if model.runs_on_kubernetes else [worker(model, mode) for mode in Mode]


def services(registry: Registry) -> list[Service]:
    """Every service of the stack; two with one name would be one container, so that is an error."""
    stack = [Service(name, (name,)) for name in CORE_SERVICES] + [maintenance_worker()] + [
        worker for model in registry.models for worker in model_workers(model)
    ]
    names = [service.name for service in stack]
    clashes = sorted({name for name in names if names.count(name) > 1})
    if clashes:
        raise ValueError(f"services {clashes} would be named alike; give the models distinct ids")
    return stack

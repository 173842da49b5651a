"""The production stack's Airflow services: the one source of truth for ``docker-compose.yaml``
(``python -m oasis_ops.stack compose``) and for ``make celery-up`` / ``make celery-down``, which
run the same services as local processes.

Core services: api-server, scheduler, dag-processor, triggerer. Per registered model: a v1 Celery
worker on ``<supplier>-<model>-<version>`` taking one job at a time, and a v2 worker on the ``-v2``
queue running ``v2_worker_concurrency`` tasks at once (models on the KubernetesExecutor get none).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from oasis_ops.registry import Model, Registry

#: Airflow settings every service shares (the CeleryExecutor; one task per worker slot, acknowledged
#: when done so that a lost worker's task is redelivered, as on the Oasis platform).
SHARED_SETTINGS = {
    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
    "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
    "AIRFLOW__CELERY__TASK_ACKS_LATE": "True",
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


def _worker(queue: str, concurrency: int) -> Service:
    name = "worker-" + re.sub(r"[^a-z0-9]+", "-", queue.lower()).strip("-")
    command = ("celery", "worker", "--queues", queue, "--concurrency", str(concurrency))
    return Service(name, command, queue, concurrency)


def model_workers(model: Model) -> list[Service]:
    """The model's v1 and v2 Celery workers (none when its tasks run on Kubernetes)."""
    if model.executor == "KubernetesExecutor":
        return []
    return [_worker(model.queue, 1), _worker(model.v2_queue, model.scaling.v2_worker_concurrency)]


def services(registry: Registry) -> list[Service]:
    return [Service(name, (name,)) for name in CORE_SERVICES] + [
        worker for model in registry.models for worker in model_workers(model)
    ]

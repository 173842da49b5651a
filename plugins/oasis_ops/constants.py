"""The project's vocabulary: execution modes, executors, task kinds, and the worker image's layout.

Each is declared once here; queues, pools, worker services, manifests and timeouts derive from them.
"""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum


class Mode(StrEnum):
    """How an analysis runs: one task on one worker (v1), or chunked over many workers (v2)."""

    V1 = "v1"
    V2 = "v2"

    @property
    def label(self) -> str:
        return {Mode.V1: "v1 (single server)", Mode.V2: "v2 (distributed)"}[self]

    @property
    def queue_suffix(self) -> str:
        """Appended to the model's queue name: the Oasis platform's v2 queues end in ``-v2``."""
        return "" if self is Mode.V1 else "-v2"


class Executor(StrEnum):
    """Executors a model's tasks may name in the registry (absent: the default one, Celery queues)."""

    CELERY = "CeleryExecutor"
    KUBERNETES = "KubernetesExecutor"


class TaskKind(StrEnum):
    """Every task of the Oasis DAGs (the value is its task id), with its default execution timeout.

    A task running past its timeout fails (and is retried), so that a stuck analysis frees its worker
    and pool slot; a model overrides any of them with ``execution_timeout_minutes`` in the registry.
    """

    RUN_ANALYSIS = "run_analysis"
    PREPARE = "prepare"
    LOOKUP_CHUNK = "lookup_chunk"
    WRITE_INPUT_FILES = "write_input_files"
    LOSS_CHUNK = "loss_chunk"
    PLAN_OUTPUTS = "plan_outputs"
    OUTPUT_PART = "output_part"
    AGGREGATE = "aggregate"

    @property
    def default_timeout(self) -> timedelta:
        return _DEFAULT_TIMEOUTS[self]


_DEFAULT_TIMEOUTS = {
    TaskKind.RUN_ANALYSIS: timedelta(hours=12),
    TaskKind.PREPARE: timedelta(minutes=30),
    TaskKind.LOOKUP_CHUNK: timedelta(hours=2),
    TaskKind.WRITE_INPUT_FILES: timedelta(hours=3),
    TaskKind.LOSS_CHUNK: timedelta(hours=6),
    TaskKind.PLAN_OUTPUTS: timedelta(minutes=30),
    TaskKind.OUTPUT_PART: timedelta(hours=6),
    TaskKind.AGGREGATE: timedelta(hours=1),
}

#: Airflow's default Celery queue (``[operators] default_queue``), served by the stack's maintenance worker:
#: the storage hygiene DAG runs there, as do DAGs users add without a model queue.
MAINTENANCE_QUEUE = "default"

#: The model worker image (``worker_image/``): its default tag, its user, and where it mounts the
#: model data (the registry and the model folders it names) and the storage root.
DEFAULT_WORKER_IMAGE = "oasis-airflow-worker:3.3.2"
AIRFLOW_UID = 50000
MODELS_MOUNT = "/opt/oasis/models"
STORAGE_MOUNT = "/opt/oasis/storage"


def slug(text: str, separator: str) -> str:
    """``text`` lower-cased with every character but ``a-z0-9`` replaced by ``separator``, one for one.

    The one naming rule of DAG ids, services and Kubernetes objects: never collapsing runs keeps
    distinct model ids distinct (``Pi-Wind`` and ``Pi--Wind``), as the registry's clash check assumes.
    """
    return re.sub(r"[^a-z0-9]", separator, text.lower())

"""Model workers on Kubernetes: Celery worker Deployments scaled by KEDA, or KubernetesExecutor pods.

As in Airflow's official Helm chart, a KEDA ScaledObject polls Airflow's metadata database
(``task_instance``) with a PostgreSQL query; here the query computes the Oasis platform's scaling
rule of the model's ``scaling_configuration.json`` for one queue and returns the replica count
itself (``targetQueryValue`` 1). Run ``python -m oasis_ops.kubernetes render | kubectl apply -f -``
after changing the registry.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from oasis_ops.config import OasisConfig
from oasis_ops.registry import Model, load_registry

MODES = ("v1", "v2")
STORAGE_MOUNT = "/opt/oasis/storage"
MODELS_MOUNT = "/opt/oasis/models"
#: The apache/airflow image's user (group 0 owns its files); worker images build on it.
AIRFLOW_UID = 50000
#: Seconds without queued or running work before KEDA scales a worker Deployment down to its minimum.
COOLDOWN_SECONDS = 300
#: Seconds between two KEDA polls: how long queued work may wait before its workers start scaling up.
POLLING_SECONDS = 10
#: Celery's warm shutdown lets a worker finish its running tasks before it is stopped on scale-down.
TERMINATION_GRACE_SECONDS = 600
#: Task instances that want a worker: on one, in its Celery queue, or waiting in the scheduler for a
#: slot of the queue's pool (which holds back work beyond the current capacity; see ``pools``).
ACTIVE_STATES = ("scheduled", "queued", "running")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def queue_of(model: Model, mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return model.queue if mode == "v1" else model.v2_queue


def worker_name(model: Model, mode: str) -> str:
    """The queue as a DNS label (``OasisLMF-PiWind-1-v2`` -> ``oasislmf-piwind-1-v2-worker``).

    Unique per model: the registry rejects models whose ids differ only where this name does.
    """
    name = re.sub(r"[^a-z0-9]", "-", queue_of(model, mode).lower()) + "-worker"
    if not _DNS_LABEL.fullmatch(name):
        raise ValueError(f"{model.key}: {name!r} is not a Kubernetes name (a DNS label of at most 63 characters)")
    return name


def scaling_query(model: Model, mode: str) -> str:
    """PostgreSQL query: the worker replica count the model's scaling rule wants for ``mode``'s queue.

    Scheduled, queued and running task instances on the queue are its load; nothing there gives
    ``worker_count_min``. FIXED_WORKERS: ``max(worker_count_fixed, min)``. QUEUE_LOAD: one worker per
    active analysis (DAG run), within ``[min, max]``. DYNAMIC_TASKS: one worker per
    ``chunks_per_worker`` task instances, within ``[min, max]``; it is a v2 rule (v1 runs one task
    per analysis), so a v1 queue falls back to QUEUE_LOAD.
    """
    scaling = model.scaling
    strategy = scaling.scaling_strategy
    if strategy == "DYNAMIC_TASKS" and mode == "v1":
        strategy = "QUEUE_LOAD"
    wanted = {
        "FIXED_WORKERS": str(scaling.worker_count_fixed),
        "QUEUE_LOAD": f"LEAST(COUNT(DISTINCT (dag_id, run_id)), {scaling.worker_count_max})",
        "DYNAMIC_TASKS": f"LEAST(CEIL(COUNT(*)::numeric / {scaling.chunks_per_worker}), {scaling.worker_count_max})",
    }[strategy]
    states = ", ".join(_sql_literal(state) for state in ACTIVE_STATES)
    return (
        f"SELECT (CASE WHEN COUNT(*) = 0 THEN {scaling.worker_count_min} "
        f"ELSE GREATEST({wanted}, {scaling.worker_count_min}) END)::integer "
        f"FROM task_instance WHERE queue = {_sql_literal(queue_of(model, mode))} AND state IN ({states})"
    )


def _volumes(storage_claim: str, models_claim: str) -> list[dict[str, Any]]:
    return [
        {"name": "storage", "persistentVolumeClaim": {"claimName": storage_claim}},
        {"name": "models", "persistentVolumeClaim": {"claimName": models_claim, "readOnly": True}},
    ]


def _volume_mounts() -> list[dict[str, Any]]:
    return [
        {"name": "storage", "mountPath": STORAGE_MOUNT},
        {"name": "models", "mountPath": MODELS_MOUNT, "readOnly": True},
    ]


def _env() -> list[dict[str, str]]:
    """The storage root and the registry on the mounts; ``PYTHONHASHSEED`` 0 keeps the input files
    byte-identical (see the README). numba's kernels are compiled into the worker image at build time
    (its ``NUMBA_CACHE_DIR``), so a pod started after a scale to zero does not recompile them."""
    return [
        {"name": "OASIS_STORAGE_ROOT", "value": STORAGE_MOUNT},
        {"name": "OASIS_MODEL_REGISTRY", "value": f"{MODELS_MOUNT}/registry.yaml"},
        {"name": "PYTHONHASHSEED", "value": "0"},
    ]


def _pod_security() -> dict[str, Any]:
    return {"runAsUser": AIRFLOW_UID, "runAsGroup": 0, "fsGroup": 0, "runAsNonRoot": True}


def _container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def _labels(model: Model, mode: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "oasis-worker",
        "app.kubernetes.io/instance": worker_name(model, mode),
        "app.kubernetes.io/component": f"worker-{mode}",
    }


def worker_deployment(
    model: Model,
    mode: str,
    *,
    namespace: str,
    storage_claim: str,
    models_claim: str,
    db_connection_env: str,
    db_secret: str,
) -> dict[str, Any]:
    """A Celery worker for ``mode``'s queue: one task at a time for v1, ``v2_worker_concurrency`` chunks
    for v2, as the model's pools assume (see ``pools``). A v2 worker requests a CPU per chunk; a v1
    task uses every core it sees, so it requests none here (size its nodes instead).

    ``db_connection_env`` is the metadata database URL, from ``db_secret``'s key ``connection`` as in
    Airflow's chart: KEDA reads it from the Deployment it scales. ``replicas`` is left to KEDA, so that
    re-applying the manifests does not reset the current scale.
    """
    name = worker_name(model, mode)
    concurrency = 1 if mode == "v1" else model.scaling.v2_worker_concurrency
    container: dict[str, Any] = {
        "name": "worker",
        "image": model.worker_image,
        # args, not command: the image's entrypoint stays in charge (as in Airflow's chart)
        "args": ["airflow", "celery", "worker", "--queues", queue_of(model, mode), "--concurrency", str(concurrency)],
        "env": [
            *_env(),
            {"name": db_connection_env, "valueFrom": {"secretKeyRef": {"name": db_secret, "key": "connection"}}},
        ],
        "volumeMounts": _volume_mounts(),
        "securityContext": _container_security(),
    }
    if mode == "v2":
        container["resources"] = {"requests": {"cpu": str(concurrency)}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": _labels(model, mode)},
        "spec": {
            "selector": {"matchLabels": _labels(model, mode)},
            "template": {
                "metadata": {"labels": _labels(model, mode)},
                "spec": {
                    "securityContext": _pod_security(),
                    "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
                    "containers": [container],
                    "volumes": _volumes(storage_claim, models_claim),
                },
            },
        },
    }


def scaled_object(model: Model, mode: str, *, namespace: str, db_connection_env: str) -> dict[str, Any]:
    """KEDA scales the worker Deployment to :func:`scaling_query`'s value.

    The bounds never clip the query: a fixed count above ``worker_count_max`` still fits, and an HPA
    needs a maximum of at least 1.
    """
    scaling = model.scaling
    name = worker_name(model, mode)
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": namespace, "labels": _labels(model, mode)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicaCount": scaling.worker_count_min,
            "maxReplicaCount": max(scaling.worker_count_max, scaling.most_workers, 1),
            "pollingInterval": POLLING_SECONDS,
            "cooldownPeriod": COOLDOWN_SECONDS,
            "triggers": [
                {
                    "type": "postgresql",
                    "metadata": {
                        "query": scaling_query(model, mode),
                        "targetQueryValue": "1",
                        "connectionFromEnv": db_connection_env,
                    },
                }
            ],
        },
    }


def render_manifests(
    registry_models: Iterable[Model],
    *,
    namespace: str = "oasis",
    storage_claim: str = "oasis-storage",
    models_claim: str = "oasis-model-data",
    db_connection_env: str = "AIRFLOW_CONN_AIRFLOW_DB",
    db_secret: str = "airflow-metadata",
) -> list[dict[str, Any]]:
    """A worker Deployment and its ScaledObject per model and mode.

    KubernetesExecutor models get none: each of their tasks runs in its own pod (:func:`executor_kwargs`).
    """
    manifests: list[dict[str, Any]] = []
    for model in registry_models:
        if model.executor == "KubernetesExecutor":
            continue
        for mode in MODES:
            manifests.append(
                worker_deployment(
                    model,
                    mode,
                    namespace=namespace,
                    storage_claim=storage_claim,
                    models_claim=models_claim,
                    db_connection_env=db_connection_env,
                    db_secret=db_secret,
                )
            )
            manifests.append(scaled_object(model, mode, namespace=namespace, db_connection_env=db_connection_env))
    return manifests


def executor_kwargs(
    model: Model, *, storage_claim: str = "oasis-storage", models_claim: str = "oasis-model-data"
) -> dict[str, Any]:
    """Operator arguments that run the model's tasks on its executor: none for the default one.

    For the KubernetesExecutor, a ``pod_override`` that the executor merges into its pod template,
    whose task container is the one named ``base``: the worker image, volumes and environment of the
    Celery workers, and one CPU, what one v2 chunk uses.
    """
    if model.executor != "KubernetesExecutor":
        return {}
    # only KubernetesExecutor models pay for this import; the provider's own deserializer builds a
    # V1Pod that the executor can pickle
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator

    container = {
        "name": "base",
        "image": model.worker_image,
        "env": _env(),
        "volumeMounts": _volume_mounts(),
        "securityContext": _container_security(),
        "resources": {"requests": {"cpu": "1"}},
    }
    spec = {
        "securityContext": _pod_security(),
        "containers": [container],
        "volumes": _volumes(storage_claim, models_claim),
    }
    pod = PodGenerator.deserialize_model_dict({"apiVersion": "v1", "kind": "Pod", "spec": spec})
    return {"executor": "KubernetesExecutor", "executor_config": {"pod_override": pod}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m oasis_ops.kubernetes", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser("render", help="print the worker Deployments and KEDA ScaledObjects as YAML")
    render.add_argument("--registry", type=Path, help="model registry (default: OASIS_MODEL_REGISTRY)")
    args = parser.parse_args(argv)
    registry = load_registry(args.registry or OasisConfig.from_env().registry_path)
    for error in registry.errors:
        print(f"skipped: {error}", file=sys.stderr)
    print(yaml.safe_dump_all(render_manifests(registry.models), sort_keys=False), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

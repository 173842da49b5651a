"""Model workers on Kubernetes: Celery worker Deployments scaled by KEDA, or KubernetesExecutor pods.

As in Airflow's official Helm chart, a KEDA ScaledObject polls Airflow's metadata database
(``task_instance``) with a PostgreSQL query; here the query computes the Oasis platform's scaling
rule of the model's ``scaling_configuration.json`` for one queue and returns the replica count
itself (``targetQueryValue`` 1). Run ``python -m oasis_ops.deploy.kubernetes render | kubectl apply -f -``
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
from oasis_ops.constants import Mode
from oasis_ops.deploy.stack import CELERY_CONFIG_OPTIONS
from oasis_ops.executors import MODELS_CLAIM, STORAGE_CLAIM, container_security, pod_security, volume_mounts, volumes, worker_env
from oasis_ops.registry import Model, load_registry
from oasis_ops.scaling import ScalingStrategy

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


def worker_name(model: Model, mode: Mode) -> str:
    """The model's worker name as a DNS label (``OasisLMF-PiWind-1-v2`` -> ``oasislmf-piwind-1-v2-worker``).

    Unique per model: the registry refuses a model whose DAG ids or queues another one already takes.
    """
    name = model.worker_name(mode) + "-worker"
    if not _DNS_LABEL.fullmatch(name):
        raise ValueError(f"{model.key}: {name!r} is not a Kubernetes name (a DNS label of at most 63 characters)")
    return name


def scaling_query(model: Model, mode: Mode) -> str:
    """PostgreSQL query: the worker replica count the model's scaling rule wants for ``mode``'s queue.

    Scheduled, queued and running task instances on the queue are its load; nothing there gives
    ``worker_count_min``. FIXED_WORKERS: ``max(worker_count_fixed, min)``. QUEUE_LOAD: one worker per
    active analysis (DAG run), within ``[min, max]``. DYNAMIC_TASKS: one worker per
    ``chunks_per_worker`` task instances, within ``[min, max]``; it is a v2 rule (v1 runs one task
    per analysis), so a v1 queue falls back to QUEUE_LOAD.
    """
    scaling = model.scaling
    strategy = ScalingStrategy(scaling.scaling_strategy)
    if strategy is ScalingStrategy.DYNAMIC_TASKS and mode is Mode.V1:
        strategy = ScalingStrategy.QUEUE_LOAD
    wanted = {
        ScalingStrategy.FIXED_WORKERS: str(scaling.worker_count_fixed),
        ScalingStrategy.QUEUE_LOAD: f"LEAST(COUNT(DISTINCT (dag_id, run_id)), {scaling.worker_count_max})",
        ScalingStrategy.DYNAMIC_TASKS: f"LEAST(CEIL(COUNT(*)::numeric / {scaling.chunks_per_worker}), {scaling.worker_count_max})",
    }[strategy]
    states = ", ".join(_sql_literal(state) for state in ACTIVE_STATES)
    return (
        f"SELECT (CASE WHEN COUNT(*) = 0 THEN {scaling.worker_count_min} "
        f"ELSE GREATEST({wanted}, {scaling.worker_count_min}) END)::integer "
        f"FROM task_instance WHERE queue = {_sql_literal(model.queue(mode))} AND state IN ({states})"
    )


def _labels(model: Model, mode: Mode) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "oasis-worker",
        "app.kubernetes.io/instance": worker_name(model, mode),
        "app.kubernetes.io/component": f"worker-{mode.value}",
    }


def worker_deployment(
    model: Model,
    mode: Mode,
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
    concurrency = model.worker_concurrency(mode)
    container: dict[str, Any] = {
        "name": "worker",
        "image": model.worker_image,
        # args, not command: the image's entrypoint stays in charge (as in Airflow's chart)
        "args": ["airflow", "celery", "worker", "--queues", model.queue(mode), "--concurrency", str(concurrency)],
        "env": [
            *worker_env(),
            {"name": "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS", "value": CELERY_CONFIG_OPTIONS},
            {"name": db_connection_env, "valueFrom": {"secretKeyRef": {"name": db_secret, "key": "connection"}}},
        ],
        "volumeMounts": volume_mounts(),
        "securityContext": container_security(),
    }
    if mode is Mode.V2:
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
                    "securityContext": pod_security(),
                    "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
                    "containers": [container],
                    "volumes": volumes(storage_claim, models_claim),
                },
            },
        },
    }


def scaled_object(model: Model, mode: Mode, *, namespace: str, db_connection_env: str) -> dict[str, Any]:
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
    storage_claim: str = STORAGE_CLAIM,
    models_claim: str = MODELS_CLAIM,
    db_connection_env: str = "AIRFLOW_CONN_AIRFLOW_DB",
    db_secret: str = "airflow-metadata",
) -> list[dict[str, Any]]:
    """A worker Deployment and its ScaledObject per model and mode.

    KubernetesExecutor models get none: each of their tasks runs in its own pod (:func:`oasis_ops.executors.executor_kwargs`).
    """
    manifests: list[dict[str, Any]] = []
    for model in registry_models:
        if model.runs_on_kubernetes:
            continue
        for mode in Mode:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m oasis_ops.deploy.kubernetes", description=__doc__.splitlines()[0])
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

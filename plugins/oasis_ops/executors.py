"""Which executor runs a model's tasks, and the pod a KubernetesExecutor task runs in.

Parse-time code: the DAG factory passes :func:`executor_kwargs` to every task. The pod pieces
(volumes, environment, security) are shared with the worker Deployments of
:mod:`oasis_ops.deploy.kubernetes`, so a task pod and a Celery worker pod see the same things.
"""

from __future__ import annotations

from typing import Any

from oasis_ops.constants import AIRFLOW_UID, MODELS_MOUNT, STORAGE_MOUNT, Executor
from oasis_ops.registry import Model

STORAGE_CLAIM = "oasis-storage"
MODELS_CLAIM = "oasis-model-data"


def volumes(storage_claim: str = STORAGE_CLAIM, models_claim: str = MODELS_CLAIM) -> list[dict[str, Any]]:
    return [
        {"name": "storage", "persistentVolumeClaim": {"claimName": storage_claim}},
        {"name": "models", "persistentVolumeClaim": {"claimName": models_claim, "readOnly": True}},
    ]


def volume_mounts() -> list[dict[str, Any]]:
    return [
        {"name": "storage", "mountPath": STORAGE_MOUNT},
        {"name": "models", "mountPath": MODELS_MOUNT, "readOnly": True},
    ]


def worker_env() -> list[dict[str, str]]:
    """The storage root and the registry on the mounts; ``PYTHONHASHSEED`` 0 keeps the input files
    byte-identical (see the README). numba's kernels are compiled into the worker image at build time
    (its ``NUMBA_CACHE_DIR``), so a pod started after a scale to zero does not recompile them."""
    return [
        {"name": "OASIS_STORAGE_ROOT", "value": STORAGE_MOUNT},
        {"name": "OASIS_MODEL_REGISTRY", "value": f"{MODELS_MOUNT}/registry.yaml"},
        {"name": "PYTHONHASHSEED", "value": "0"},
    ]


def pod_security() -> dict[str, Any]:
    return {"runAsUser": AIRFLOW_UID, "runAsGroup": 0, "fsGroup": 0, "runAsNonRoot": True}


def container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def executor_kwargs(model: Model) -> dict[str, Any]:
    """Operator arguments that run the model's tasks on its executor: none for the default one.

    For the KubernetesExecutor, a ``pod_override`` that the executor merges into its pod template,
    whose task container is the one named ``base``: the worker image, volumes and environment of the
    Celery workers, and one CPU, what one v2 chunk uses.
    """
    if not model.runs_on_kubernetes:
        return {}
    # only KubernetesExecutor models pay for this import; the provider's own deserializer builds a
    # V1Pod that the executor can pickle
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator

    container = {
        "name": "base",
        "image": model.worker_image,
        "env": worker_env(),
        "volumeMounts": volume_mounts(),
        "securityContext": container_security(),
        "resources": {"requests": {"cpu": "1"}},
    }
    spec = {"securityContext": pod_security(), "containers": [container], "volumes": volumes()}
    pod = PodGenerator.deserialize_model_dict({"apiVersion": "v1", "kind": "Pod", "spec": spec})
    return {"executor": Executor.KUBERNETES.value, "executor_config": {"pod_override": pod}}

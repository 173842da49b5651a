"""``docker-compose.yaml`` rendered from ``oasis_ops.deploy.stack``: the same services, queues, concurrency
and settings as ``make celery-up``, in containers of the model worker image.

    python -m oasis_ops.deploy.compose [--registry models/registry.yaml] > docker-compose.yaml

Secrets (JWT secret, fernet key, admin password) come from a ``.env`` the user makes from
``.env.example``; every service shares them. Fixed scaling: ``docker compose up --scale <worker>=N``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from oasis_ops.config import OasisConfig
from oasis_ops.constants import DEFAULT_WORKER_IMAGE as IMAGE
from oasis_ops.constants import MODELS_MOUNT as MODELS
from oasis_ops.constants import STORAGE_MOUNT as STORAGE
from oasis_ops.deploy.stack import SHARED_SETTINGS, Service, services
from oasis_ops.registry import load_registry

HEADER = "# Rendered by `python -m oasis_ops.deploy.compose` from the model registry: edit oasis_ops/deploy/stack.py, not this file.\n"

ENVIRONMENT = SHARED_SETTINGS | {
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://airflow:airflow@postgres/airflow",
    "AIRFLOW__CELERY__BROKER_URL": "redis://redis:6379/0",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://api-server:8080/execution/",
    "AIRFLOW__CORE__FERNET_KEY": "${AIRFLOW_FERNET_KEY:?set it in .env (see .env.example)}",
    "AIRFLOW__API_AUTH__JWT_SECRET": "${AIRFLOW_JWT_SECRET:?set it in .env (see .env.example)}",
    "AIRFLOW__API__SECRET_KEY": "${AIRFLOW_JWT_SECRET:?set it in .env (see .env.example)}",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": f"{STORAGE}/.airflow/passwords.json",
    "OASIS_ADMIN_PASSWORD": "${OASIS_ADMIN_PASSWORD:?set it in .env (see .env.example)}",
    "OASIS_MODEL_REGISTRY": f"{MODELS}/registry.yaml",
    "OASIS_STORAGE_ROOT": STORAGE,
}
INIT = (
    "set -e; airflow db migrate; python -m oasis_ops.deploy.pools; mkdir -p " + STORAGE + "/.airflow; "
    'python -c "import json, os; print(json.dumps({\'admin\': os.environ[\'OASIS_ADMIN_PASSWORD\']}))" '
    f"> {STORAGE}/.airflow/passwords.json"
)
HEALTH = {
    "api-server": ["CMD", "curl", "--fail", "http://localhost:8080/api/v2/monitor/health"],
    "scheduler": ["CMD", "airflow", "jobs", "check", "--job-type", "SchedulerJob", "--local"],
    "dag-processor": ["CMD", "airflow", "jobs", "check", "--job-type", "DagProcessorJob", "--local"],
    "triggerer": ["CMD", "airflow", "jobs", "check", "--job-type", "TriggererJob", "--local"],
}


def _airflow_service(service: Service) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "<<": "*airflow-common",
        "command": list(service.command),
        "depends_on": {"airflow-init": {"condition": "service_completed_successfully"}},
    }
    if service.queue:
        spec["healthcheck"] = {
            "test": ["CMD-SHELL", 'celery --app airflow.providers.celery.executors.celery_executor.app inspect ping -d "celery@$${HOSTNAME}"'],
            "interval": "30s", "timeout": "10s", "retries": 5,
        }
        spec["depends_on"]["api-server"] = {"condition": "service_healthy"}
    elif service.name in HEALTH:
        spec["healthcheck"] = {"test": HEALTH[service.name], "interval": "30s", "timeout": "10s", "retries": 5}
    if service.name == "api-server":
        spec["ports"] = ["${AIRFLOW_API_PORT:-8080}:8080"]
    return spec


def render(registry_path: Path) -> str:
    registry = load_registry(registry_path)
    if registry.errors:
        raise SystemExit("\n".join(map(str, registry.errors)))
    airflow = {service.name: _airflow_service(service) for service in services(registry)}
    document = {
        "x-airflow-common": {
            "image": IMAGE,
            "build": {"context": ".", "dockerfile": "worker_image/Dockerfile"},
            "environment": dict(ENVIRONMENT),
            "volumes": [f"oasis-storage:{STORAGE}", f"${{OASIS_MODELS_DIR:?set it in .env (see .env.example)}}:{MODELS}:ro"],
            "depends_on": {"postgres": {"condition": "service_healthy"}, "redis": {"condition": "service_healthy"}},
        },
        "services": {
            "postgres": {
                "image": "postgres:16",
                "environment": {"POSTGRES_USER": "airflow", "POSTGRES_PASSWORD": "airflow", "POSTGRES_DB": "airflow"},
                "volumes": ["postgres-db:/var/lib/postgresql/data"],
                "healthcheck": {"test": ["CMD", "pg_isready", "-U", "airflow"], "interval": "10s", "retries": 5},
            },
            "redis": {
                "image": "redis:7.2",
                "healthcheck": {"test": ["CMD", "redis-cli", "ping"], "interval": "10s", "retries": 5},
            },
            "airflow-init": {"<<": "*airflow-common", "entrypoint": ["/bin/bash", "-c"], "command": [INIT]},
            **airflow,
            "flower": {
                "<<": "*airflow-common",
                "command": ["celery", "flower"],
                "ports": ["${FLOWER_PORT:-5555}:5555"],
                "depends_on": {"airflow-init": {"condition": "service_completed_successfully"}},
            },
        },
        "volumes": {"postgres-db": None, "oasis-storage": None},
    }
    text = yaml.safe_dump(document, sort_keys=False, width=200)
    # YAML merge keys: the anchor and its uses, which safe_dump cannot write itself.
    text = text.replace("x-airflow-common:\n", "x-airflow-common: &airflow-common\n", 1)
    return HEADER + text.replace("'<<': '*airflow-common'", "<<: *airflow-common")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m oasis_ops.deploy.compose", description=__doc__.splitlines()[0])
    parser.add_argument("--registry", type=Path, default=OasisConfig.from_env().registry_path)
    sys.stdout.write(render(parser.parse_args(argv).registry))
    return 0


if __name__ == "__main__":
    sys.exit(main())

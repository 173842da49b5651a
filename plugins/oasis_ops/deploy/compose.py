"""``docker-compose.yaml`` rendered from ``oasis_ops.deploy.stack``: the same services, queues, concurrency
and settings as ``make celery-up``, in containers of the model worker image.

    python -m oasis_ops.deploy.compose [--registry models/registry.yaml] > docker-compose.yaml

Secrets (JWT secret, fernet key, admin password), the models folder, the images and the host ports come
from a ``.env`` the user makes from ``.env.example``; every service shares them. Fixed scaling:
``docker compose up --scale <worker>=N``. The file works with Docker Compose v2 and with Debian
bookworm's ``docker-compose`` 1.29 (no ``name:``, no ``start_interval``, no ``develop``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from oasis_ops.config import OasisConfig
from oasis_ops.constants import DEFAULT_WORKER_IMAGE
from oasis_ops.constants import MODELS_MOUNT as MODELS
from oasis_ops.constants import STORAGE_MOUNT as STORAGE
from oasis_ops.deploy.stack import SHARED_SETTINGS, Service, services
from oasis_ops.registry import load_registry

HEADER = "# Rendered by `python -m oasis_ops.deploy.compose` from the model registry: edit oasis_ops/deploy/stack.py, not this file.\n"
#: Images, overridable in ``.env``: the worker image (every Airflow service) and the official postgres and
#: redis images, of the worker image's Debian release.
IMAGE = f"${{OASIS_WORKER_IMAGE:-{DEFAULT_WORKER_IMAGE}}}"
POSTGRES_IMAGE = "${OASIS_POSTGRES_IMAGE:-postgres:15-bookworm}"
REDIS_IMAGE = "${OASIS_REDIS_IMAGE:-redis:7.2-bookworm}"
#: Task logs: one volume for every service, so that the api-server shows the logs of a worker that is gone.
LOGS = "/opt/airflow/logs"

ENVIRONMENT = SHARED_SETTINGS | {
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://airflow:airflow@postgres/airflow",
    "AIRFLOW__CELERY__BROKER_URL": "redis://redis:6379/0",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://api-server:8080/execution/",
    # Workers are known by their address on the compose network, which the api-server can reach for the
    # logs of running tasks (a container's hostname is its id, which the network's DNS does not resolve).
    "AIRFLOW__CORE__HOSTNAME_CALLABLE": "airflow.utils.net.get_host_ip_address",
    # The scheduler's health endpoint (port 8974), a check cheaper than starting an Airflow CLI.
    "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
    # How long a task whose worker died (container killed) stays running before it is failed and retried.
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "${AIRFLOW_TASK_HEARTBEAT_TIMEOUT:-300}",
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
#: Health checks: the first runs one interval after the start, so the cheap HTTP ones run often; those
#: that start the Airflow or Celery CLI (a second or more of CPU) every 30 s, with a timeout long enough for a busy machine (Docker
#: does not stop a check that times out: short timeouts pile checks up on a machine busy with an analysis).
#: Failures within the start period do not count (a success counts at once): on a busy 2-core machine
#: the api-server took more than its five 10 s retries to start, and Compose gave up on its dependents.
CHECK_TIMING = {"interval": "30s", "timeout": "60s", "retries": 5, "start_period": "5m"}
HTTP_CHECK_TIMING = {"interval": "10s", "timeout": "30s", "retries": 5, "start_period": "5m"}
#: The image has no curl: HTTP health checks use its Python (urlopen raises on an error status).
HTTP_CHECK = "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=25)"
HEALTH = {
    "api-server": ["CMD", "python", "-c", HTTP_CHECK, "http://localhost:8080/api/v2/monitor/health"],
    "scheduler": ["CMD", "python", "-c", HTTP_CHECK, "http://localhost:8974/health"],
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
        # The Celery CLI alone, on the broker: the worker answers its mailbox whatever the app; Airflow's
        # app would load all of Airflow for each check.
        spec["healthcheck"] = {
            "test": ["CMD-SHELL", 'celery --broker "$${AIRFLOW__CELERY__BROKER_URL}" inspect ping --destination "celery@$${HOSTNAME}"'],
            **CHECK_TIMING,
        }
        spec["depends_on"]["api-server"] = {"condition": "service_healthy"}
    elif service.name in HEALTH:
        timing = HTTP_CHECK_TIMING if HEALTH[service.name][1] == "python" else CHECK_TIMING
        spec["healthcheck"] = {"test": HEALTH[service.name], **timing}
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
            "volumes": [
                f"oasis-storage:{STORAGE}",
                f"airflow-logs:{LOGS}",
                f"${{OASIS_MODELS_DIR:?set it in .env (see .env.example)}}:{MODELS}:ro",
            ],
            "depends_on": {"postgres": {"condition": "service_healthy"}, "redis": {"condition": "service_healthy"}},
        },
        "services": {
            "postgres": {
                "image": POSTGRES_IMAGE,
                "environment": {"POSTGRES_USER": "airflow", "POSTGRES_PASSWORD": "airflow", "POSTGRES_DB": "airflow"},
                "volumes": ["postgres-db:/var/lib/postgresql/data"],
                "healthcheck": {"test": ["CMD", "pg_isready", "-U", "airflow"], "interval": "10s", "retries": 5},
            },
            "redis": {
                "image": REDIS_IMAGE,
                "healthcheck": {"test": ["CMD", "redis-cli", "ping"], "interval": "10s", "retries": 5},
            },
            "airflow-init": {"<<": "*airflow-common", "entrypoint": ["/bin/bash", "-c"], "command": [INIT]},
            **airflow,
            "flower": {
                "<<": "*airflow-common",
                "command": ["celery", "flower"],
                "ports": ["${FLOWER_PORT:-5555}:5555"],
                "depends_on": {"airflow-init": {"condition": "service_completed_successfully"}},
                "healthcheck": {"test": ["CMD", "python", "-c", HTTP_CHECK, "http://localhost:5555/healthcheck"], **HTTP_CHECK_TIMING},
            },
        },
        "volumes": {"postgres-db": None, "oasis-storage": None, "airflow-logs": None},
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

"""The Celery configuration of the production stack (``[celery] celery_config_options``): Airflow's own,
plus :mod:`oasis_ops.execution.preload`, which every worker imports as it starts so that its tasks do not
import oasislmf themselves. Other services only read the configuration: ``imports`` acts in workers."""

from __future__ import annotations

from typing import Any

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

CELERY_CONFIG: dict[str, Any] = {**DEFAULT_CELERY_CONFIG, "imports": ("oasis_ops.execution.preload",)}

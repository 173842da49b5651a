"""A run's ``priority`` (1-10) as the priority weight of each of its task instances.

The scheduler sends waiting task instances to the executor by descending ``priority_weight`` when
slots are scarce (a Celery queue itself is first in, first out). Airflow fixes weights per task
when a DAG is parsed; this Airflow cluster policy re-weights each task instance of an Oasis DAG run
from the run's conf when the instance is created or cleared, so one priority orders v1 and v2 runs
alike. It is installed by ``airflow_local_settings`` (in the plugins folder).
"""

from __future__ import annotations

from typing import Any

# Airflow imports this module while it initialises (airflow_local_settings): it must not import
# airflow, nor any module that does.
DEFAULT_PRIORITY = 4
#: The Oasis platform's range; 8-10 are reserved for administrators.
LOWEST_PRIORITY, HIGHEST_PRIORITY = 1, 10
#: Tag of every DAG built from the model registry; other DAGs keep their weights.
OASIS_TAG = "oasis"


def is_priority(value: Any) -> bool:
    """The one check of a priority: an integer from :data:`LOWEST_PRIORITY` to :data:`HIGHEST_PRIORITY`."""
    return isinstance(value, int) and not isinstance(value, bool) and LOWEST_PRIORITY <= value <= HIGHEST_PRIORITY


def run_priority(conf: Any) -> int:
    """The run's priority from its conf; the default when absent or invalid (the run then fails
    in its first task, where the conf is checked)."""
    priority = conf.get("priority", DEFAULT_PRIORITY) if isinstance(conf, dict) else DEFAULT_PRIORITY
    return priority if is_priority(priority) else DEFAULT_PRIORITY


def task_instance_mutation_hook(task_instance: Any, dag_run: Any = None) -> None:
    """Cluster policy: weight an Oasis task instance by its run's priority."""
    task = getattr(task_instance, "task", None)
    dag = getattr(task, "dag", None)
    if dag_run is None or dag is None or OASIS_TAG not in (dag.tags or ()):
        return
    task_instance.priority_weight = run_priority(dag_run.conf)

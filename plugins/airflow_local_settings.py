"""Airflow local settings of the Oasis DAGs (imported by Airflow from the plugins folder)."""

from oasis_ops.priority import task_instance_mutation_hook

__all__ = ["task_instance_mutation_hook"]

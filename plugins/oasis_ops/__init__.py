"""Oasis catastrophe loss models as Airflow DAGs.

The package is importable from DAG files (Airflow puts ``plugins/`` on ``sys.path``). Its layout is
its import discipline:

* top-level modules are what DAG parsing needs (registry, run parameters, chunk and scaling rules,
  schedules, priority, storage, the DAG factory and operators): no oasislmf, pandas or numba at
  module level (ruff's banned-module-level-imports enforces it);
* :mod:`oasis_ops.execution` runs inside tasks: oasislmf's steps, v1, v2, staging, validation;
* :mod:`oasis_ops.deploy` starts and describes the stack: Celery launcher, compose, Kubernetes,
  pools, the embedded Airflow home, the image's warm-up;
* :mod:`oasis_ops.tools` are command-line tools: the synthetic model, ``make demo``, loss summaries.
"""

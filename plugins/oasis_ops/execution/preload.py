"""Imported once by each Celery worker as it starts (``imports`` in :mod:`oasis_ops.deploy.celery_config`),
before it forks its pool.

Airflow forks every task process from a pool process, so the tasks find oasislmf, ods-tools, pandas and
numba imported already instead of importing them each time: about 3 s of every task, which a v2 run
pays once per chunk (``bench/fanout.md``). The same for what each task process does before its body
runs: it loads Airflow's plugins (ours build the Oasis API's FastAPI app) and parses its DAG file (about
0.4 s). A worker therefore runs the ``oasis_ops`` it started with: restart the workers after upgrading
the plugins, as for any Celery deployment.
"""

from oasis_ops.execution.environment import prepare_environment

prepare_environment()  # numba reads NUMBA_CACHE_DIR once, when it is imported below

import oasislmf.execution.bin  # noqa: E402,F401  (prepare_run_directory: every loss chunk and output part)
from airflow.dag_processing.dagbag import BundleDagBag  # noqa: E402,F401  (each task parses its DAG file)
from airflow.sdk.listener import get_listener_manager  # noqa: E402
from ods_tools.oed import OedExposure  # noqa: E402,F401  (validation and staging)

from oasis_ops.execution import distributed, single_server  # noqa: E402,F401  (and oasislmf's manager, steps)

get_listener_manager()  # cached: the plugins, loaded once here instead of in every task

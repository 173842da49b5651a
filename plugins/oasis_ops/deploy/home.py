"""Print the ``airflow.cfg`` of the embedded Airflow home: ``python -m oasis_ops.deploy.home AIRFLOW_HOME``.

SQLite and the LocalExecutor, this repository's ``dags/`` and ``plugins/``, so that
``AIRFLOW_HOME=.airflow .venv/bin/airflow …`` works from the repo root with no other environment.
Only what differs from Airflow's defaults is written; Airflow fills in the rest.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from oasis_ops.config import PROJECT_ROOT
from oasis_ops.deploy.stack import MIN_HEARTBEAT_INTERVAL

TEMPLATE = """\
[core]
dags_folder = {root}/dags
plugins_folder = {root}/plugins
executor = LocalExecutor
load_examples = False
dags_are_paused_at_creation = False
# v2 runs fan out into many chunk tasks: do not cap them below the chunk count (the model's pools do).
max_active_tasks_per_dag = 256
# The LocalExecutor starts this many worker processes, idle or not: sized to the machine.
parallelism = {parallelism}

[workers]
# A worker slot is freed at most 2 s, not 5 s, after its task ended (oasis_ops.deploy.stack.MIN_HEARTBEAT_INTERVAL).
min_heartbeat_interval = {min_heartbeat_interval}

[database]
sql_alchemy_conn = sqlite:///{home}/airflow.db

[logging]
base_log_folder = {home}/logs

[api]
secret_key = {api_secret}

[api_auth]
jwt_secret = {jwt_secret}
"""


#: LocalExecutor worker processes per core: tasks mostly wait on their pipelines' processes.
TASKS_PER_CORE = 4


def render(home: Path) -> str:
    return TEMPLATE.format(
        parallelism=max(8, TASKS_PER_CORE * (os.cpu_count() or 1)),
        min_heartbeat_interval=MIN_HEARTBEAT_INTERVAL,
        root=PROJECT_ROOT,
        home=home.resolve(),
        api_secret=secrets.token_urlsafe(32),
        jwt_secret=secrets.token_urlsafe(32),
    )


if __name__ == "__main__":
    sys.stdout.write(render(Path(sys.argv[1])))

"""One Airflow pool per model queue, as large as the model's workers can run at once.

Without it the scheduler hands every ready task to Celery, whose queues are first in, first out,
and a run's priority could not reorder them. With it, work beyond the workers' capacity waits in
the scheduler, which sends the highest ``priority_weight`` first (see ``priority``). Run
``python -m oasis_ops.deploy.pools`` after changing the registry (``make setup`` runs it).
"""

from __future__ import annotations

import sys

from oasis_ops.config import OasisConfig
from oasis_ops.constants import Mode
from oasis_ops.registry import Model, Registry, load_registry


def model_pools(model: Model) -> dict[str, int]:
    """Pool name (the queue's name) -> slots, for the model's v1 and v2 queues: its workers' slots."""
    return {model.queue(mode): model.pool_slots(mode) for mode in Mode}


def sync_pools(registry: Registry) -> dict[str, int]:
    """Create or resize the pools of every registered model in Airflow's metadata database."""
    from airflow.models.pool import Pool

    pools = {name: slots for model in registry.models for name, slots in model_pools(model).items()}
    for name, slots in pools.items():
        Pool.create_or_update_pool(name, slots, f"Oasis model queue {name}", include_deferred=False)
    return pools


def main() -> int:
    registry = load_registry(OasisConfig.from_env().registry_path)
    for error in registry.errors:
        print(f"skipped: {error}", file=sys.stderr)
    for name, slots in sync_pools(registry).items():
        print(f"pool {name}: {slots} slot(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

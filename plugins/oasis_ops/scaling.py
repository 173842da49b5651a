"""A model's worker scaling rules (``meta-data/scaling_configuration.json``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from oasis_ops.errors import OasisInputError
from oasis_ops.typed_config import merge_config


class ScalingStrategy(StrEnum):
    """The Oasis platform's worker scaling strategies (``scaling_strategy``)."""

    FIXED_WORKERS = "FIXED_WORKERS"
    QUEUE_LOAD = "QUEUE_LOAD"
    DYNAMIC_TASKS = "DYNAMIC_TASKS"


@dataclass(frozen=True)
class ScalingConfig:
    """The reference system's fields and defaults, plus ``v2_worker_concurrency``: the tasks one
    v2 worker runs at once (a v1 worker runs one)."""

    scaling_strategy: str = ScalingStrategy.FIXED_WORKERS.value
    worker_count_fixed: int = 1
    worker_count_min: int = 0
    worker_count_max: int = 10
    chunks_per_worker: int = 10
    v2_worker_concurrency: int = 2

    @property
    def most_workers(self) -> int:
        """The most workers the model runs: the fixed count, or the maximum when they scale."""
        if self.scaling_strategy == ScalingStrategy.FIXED_WORKERS:
            return max(self.worker_count_fixed, self.worker_count_min)
        return self.worker_count_max

    def override(self, data: Mapping[str, Any] | None, source: str) -> ScalingConfig:
        config = merge_config(
            self, data, source, choices={"scaling_strategy": tuple(s.value for s in ScalingStrategy)}, minimums={"worker_count_min": 0}
        )
        if config.worker_count_min > config.worker_count_max:
            raise OasisInputError(
                f"{source}: worker_count_min ({config.worker_count_min}) exceeds worker_count_max ({config.worker_count_max})"
            )
        return config

"""How many keys-lookup and loss chunks an analysis is split into (the Oasis platform's rules)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from oasis_ops.typed_config import merge_config


class ChunkStrategy(StrEnum):
    """The Oasis platform's chunking strategies (``lookup_strategy`` and ``loss_strategy``)."""

    FIXED_CHUNKS = "FIXED_CHUNKS"
    DYNAMIC_CHUNKS = "DYNAMIC_CHUNKS"


#: Airflow's ``[core] max_map_length``: no mapped task may expand to more instances.
MAX_CHUNKS = 1024
CHUNK_COUNT_FIELDS = ("fixed_lookup_chunks", "fixed_analysis_chunks", "dynamic_chunks_max")


@dataclass(frozen=True)
class ChunkingConfig:
    """A model's ``meta-data/chunking_configuration.json``, with the reference system's defaults."""

    lookup_strategy: str = ChunkStrategy.FIXED_CHUNKS.value
    loss_strategy: str = ChunkStrategy.FIXED_CHUNKS.value
    fixed_lookup_chunks: int = 1
    fixed_analysis_chunks: int = 1
    dynamic_locations_per_lookup: int = 10000
    dynamic_events_per_analysis: int = 1
    dynamic_chunks_max: int = 200
    #: Not the platform's: round the loss-chunk count up to a multiple of the slots of the model's v2
    #: pool, so that no wave of chunks leaves slots idle (3 chunks on 2 slots run as 2 + 1: the last
    #: alone on half the workers). Off by default; outputs do not depend on the count.
    fill_pool_slots: bool = False

    def override(self, data: Mapping[str, Any] | None, source: str) -> ChunkingConfig:
        """This configuration with ``data``'s fields replaced; ``source`` names where they came from."""
        return merge_config(
            self,
            data,
            source,
            choices=dict.fromkeys(("lookup_strategy", "loss_strategy"), tuple(s.value for s in ChunkStrategy)),
            maximums=dict.fromkeys(CHUNK_COUNT_FIELDS, MAX_CHUNKS),
            switches=("fill_pool_slots",),
        )

    def lookup_chunks(self, locations: int) -> int:
        """Keys-lookup chunk count for ``locations`` rows; never more chunks than locations."""
        locations = max(locations, 1)
        if self.lookup_strategy == ChunkStrategy.DYNAMIC_CHUNKS:
            return min(math.ceil(locations / self.dynamic_locations_per_lookup), self.dynamic_chunks_max)
        return min(self.fixed_lookup_chunks, locations)

    def loss_chunks(self, events: int, pool_slots: int = 1) -> int:
        """Loss chunk count for a run of ``events`` events (those of its prepared run folder, which the
        platform's rule estimates from the settings); never more chunks than events. With
        :attr:`fill_pool_slots`, a multiple of ``pool_slots`` where the events and the strategy's
        maximum allow one (rounded up, else down)."""
        events = max(events, 1)
        if self.loss_strategy == ChunkStrategy.FIXED_CHUNKS:
            count, most = min(self.fixed_analysis_chunks, events), min(MAX_CHUNKS, events)
        else:
            most = min(self.dynamic_chunks_max, events)
            count = min(math.ceil(events / self.dynamic_events_per_analysis), most)
        if not self.fill_pool_slots or pool_slots <= 1 or count % pool_slots == 0:
            return count
        up, down = math.ceil(count / pool_slots) * pool_slots, count // pool_slots * pool_slots
        return up if up <= most else (down or count)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    #: Not the platform's: the least work worth a DYNAMIC_CHUNKS loss chunk, in ground-up samples (for
    #: each event, the items whose areaperil its footprint hits, times the samples): about 1 µs of one core
    #: each for GUL+IL on the 2-core CI machine (v1's loss step on 40,000 locations x 2 coverages x 1,000
    #: events, 100 of 1,000 areaperils hit per event, x 20 samples = 1.6e8 took ~77 s on 2 pipelines,
    #: ~150 core-seconds). The default is ~50 s of work, about 4x a chunk's fixed cost (12.6 slot-seconds,
    #: bench/fanout.md). 0 turns the floor off; FIXED_CHUNKS counts are an explicit choice, never capped.
    min_chunk_ground_up_samples: int = 50_000_000

    def override(self, data: Mapping[str, Any] | None, source: str) -> ChunkingConfig:
        """This configuration with ``data``'s fields replaced; ``source`` names where they came from."""
        return merge_config(
            self,
            data,
            source,
            choices=dict.fromkeys(("lookup_strategy", "loss_strategy"), tuple(s.value for s in ChunkStrategy)),
            minimums={"min_chunk_ground_up_samples": 0},
            maximums=dict.fromkeys(CHUNK_COUNT_FIELDS, MAX_CHUNKS),
            switches=("fill_pool_slots",),
        )

    def lookup_chunks(self, locations: int) -> int:
        """Keys-lookup chunk count for ``locations`` rows; never more chunks than locations."""
        locations = max(locations, 1)
        if self.lookup_strategy == ChunkStrategy.DYNAMIC_CHUNKS:
            return min(math.ceil(locations / self.dynamic_locations_per_lookup), self.dynamic_chunks_max)
        return min(self.fixed_lookup_chunks, locations)

    @property
    def floors_loss_chunks(self) -> bool:
        """Whether :meth:`loss_chunks` uses an estimate of the run's ground-up samples (DYNAMIC_CHUNKS
        with a :attr:`min_chunk_ground_up_samples` floor)."""
        return self.loss_strategy == ChunkStrategy.DYNAMIC_CHUNKS and self.min_chunk_ground_up_samples > 0

    def loss_chunks(self, events: int, pool_slots: int = 1, ground_up_samples: int | None = None) -> int:
        """Loss chunk count for a run of ``events`` events (those of its prepared run folder, which the
        platform's rule estimates from the settings); never more chunks than events. DYNAMIC_CHUNKS
        splits by events alone, so with an estimate of the run's ``ground_up_samples`` it is also capped
        at one chunk per :attr:`min_chunk_ground_up_samples`: each chunk has a fixed cost, and a small run
        in 200 chunks pays it 200 times. With :attr:`fill_pool_slots`, a multiple of ``pool_slots`` where
        the events and the caps allow one (rounded up, else down)."""
        events = max(events, 1)
        if self.loss_strategy == ChunkStrategy.FIXED_CHUNKS:
            count, most = min(self.fixed_analysis_chunks, events), min(MAX_CHUNKS, events)
        else:
            most = min(self.dynamic_chunks_max, events)
            if ground_up_samples is not None and self.floors_loss_chunks:
                most = min(most, max(1, ground_up_samples // self.min_chunk_ground_up_samples))
            count = min(math.ceil(events / self.dynamic_events_per_analysis), most)
        if not self.fill_pool_slots or pool_slots <= 1 or count % pool_slots == 0:
            return count
        up, down = math.ceil(count / pool_slots) * pool_slots, count // pool_slots * pool_slots
        return up if up <= most else (down or count)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


"""How many keys-lookup and loss chunks an analysis is split into (the Oasis platform's rules)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from oasis_ops.errors import OasisInputError
from oasis_ops.typed_config import merge_config

FIXED_CHUNKS = "FIXED_CHUNKS"
DYNAMIC_CHUNKS = "DYNAMIC_CHUNKS"
STRATEGIES = (FIXED_CHUNKS, DYNAMIC_CHUNKS)
#: Airflow's ``[core] max_map_length``: no mapped task may expand to more instances.
MAX_CHUNKS = 1024
CHUNK_COUNT_FIELDS = ("fixed_lookup_chunks", "fixed_analysis_chunks", "dynamic_chunks_max")


@dataclass(frozen=True)
class ChunkingConfig:
    """A model's ``meta-data/chunking_configuration.json``, with the reference system's defaults."""

    lookup_strategy: str = FIXED_CHUNKS
    loss_strategy: str = FIXED_CHUNKS
    fixed_lookup_chunks: int = 1
    fixed_analysis_chunks: int = 1
    dynamic_locations_per_lookup: int = 10000
    dynamic_events_per_analysis: int = 1
    dynamic_chunks_max: int = 200

    def override(self, data: Mapping[str, Any] | None, source: str) -> ChunkingConfig:
        """This configuration with ``data``'s fields replaced; ``source`` names where they came from."""
        return merge_config(
            self,
            data,
            source,
            choices={"lookup_strategy": STRATEGIES, "loss_strategy": STRATEGIES},
            maximums=dict.fromkeys(CHUNK_COUNT_FIELDS, MAX_CHUNKS),
        )

    def lookup_chunks(self, locations: int) -> int:
        """Keys-lookup chunk count for ``locations`` rows; never more chunks than locations."""
        locations = max(locations, 1)
        if self.lookup_strategy == DYNAMIC_CHUNKS:
            return min(math.ceil(locations / self.dynamic_locations_per_lookup), self.dynamic_chunks_max)
        return min(self.fixed_lookup_chunks, locations)

    def loss_chunks(self, events: int | None) -> int:
        """Loss chunk count; ``events`` is only needed by the DYNAMIC strategy."""
        if self.loss_strategy == FIXED_CHUNKS:
            return self.fixed_analysis_chunks
        if events is None:
            raise OasisInputError(
                "loss_strategy DYNAMIC_CHUNKS needs the event count: give analysis_settings.event_ids or a "
                "number_of_events for the chosen event_set option in the model's model_settings.json"
            )
        return min(math.ceil(max(events, 1) / self.dynamic_events_per_analysis), self.dynamic_chunks_max)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def count_events(analysis_settings: Mapping[str, Any], model_settings: Mapping[str, Any]) -> int | None:
    """Events an analysis runs: its ``event_ids`` when more than one is given, else the size of its event set."""
    event_ids = analysis_settings.get("event_ids") or []
    if len(event_ids) > 1:
        return len(event_ids)
    event_set = model_settings.get("model_settings", {}).get("event_set", {})
    chosen = analysis_settings.get("model_settings", {}).get("event_set", event_set.get("default"))
    for option in event_set.get("options", []):
        if str(option.get("id")) == str(chosen) and option.get("number_of_events"):
            return int(option["number_of_events"])
    return None

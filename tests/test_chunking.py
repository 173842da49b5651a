"""The Oasis platform's chunk-count rules, and their bounds: never more chunks than rows or events."""

from __future__ import annotations

import pytest

from oasis_ops.chunking import MAX_CHUNKS, ChunkingConfig, ChunkStrategy
from oasis_ops.errors import OasisInputError

FIXED, DYNAMIC = ChunkStrategy.FIXED_CHUNKS.value, ChunkStrategy.DYNAMIC_CHUNKS.value


def test_defaults_are_the_reference_systems():
    config = ChunkingConfig()
    assert (config.lookup_strategy, config.loss_strategy) == (FIXED, FIXED)
    assert config.lookup_chunks(50_000) == 1 and config.loss_chunks(1447) == 1


@pytest.mark.parametrize(
    "override, locations, expected",
    [
        ({"fixed_lookup_chunks": 3}, 10, 3),
        ({"fixed_lookup_chunks": 30}, 10, 10),  # never more chunks than locations
        ({"lookup_strategy": DYNAMIC, "dynamic_locations_per_lookup": 4}, 10, 3),
        ({"lookup_strategy": DYNAMIC, "dynamic_locations_per_lookup": 1, "dynamic_chunks_max": 7}, 100, 7),
        ({"lookup_strategy": DYNAMIC}, 0, 1),
    ],
)
def test_lookup_chunks(override, locations, expected):
    assert ChunkingConfig().override(override, "t").lookup_chunks(locations) == expected


@pytest.mark.parametrize(
    "override, events, expected",
    [
        ({"fixed_analysis_chunks": 4}, 1447, 4),
        ({"loss_strategy": DYNAMIC, "dynamic_events_per_analysis": 100}, 1447, 15),
        ({"loss_strategy": DYNAMIC}, 1447, 200),  # one event per chunk, capped by dynamic_chunks_max
        ({"loss_strategy": DYNAMIC, "dynamic_chunks_max": MAX_CHUNKS}, 5000, MAX_CHUNKS),
    ],
)
def test_loss_chunks(override, events, expected):
    assert ChunkingConfig().override(override, "t").loss_chunks(events) == expected


@pytest.mark.parametrize(
    "override, events, expected",
    [
        ({"fixed_analysis_chunks": 4}, 3, 3),
        ({"fixed_analysis_chunks": 4}, 1, 1),
        ({"fixed_analysis_chunks": MAX_CHUNKS}, 10, 10),
        ({"loss_strategy": DYNAMIC}, 7, 7),  # one event per chunk
        ({"loss_strategy": DYNAMIC, "dynamic_events_per_analysis": 3}, 10, 4),
        ({"loss_strategy": DYNAMIC, "dynamic_events_per_analysis": 100}, 1, 1),
    ],
)
def test_loss_chunks_of_a_small_run(override, events, expected):
    assert ChunkingConfig().override(override, "t").loss_chunks(events) == expected


@pytest.mark.parametrize(
    "override",
    [
        {"fixed_analysis_chunks": 4},
        {"fixed_analysis_chunks": MAX_CHUNKS},
        {"loss_strategy": DYNAMIC},
        {"loss_strategy": DYNAMIC, "dynamic_chunks_max": MAX_CHUNKS},
        {"loss_strategy": DYNAMIC, "dynamic_events_per_analysis": 3},
    ],
    ids=["fixed 4", "fixed max", "dynamic default", "dynamic up to max", "dynamic 3 per chunk"],
)
def test_loss_chunks_never_exceed_the_runs_events(override):
    """A loss chunk without an event would run an empty pipeline: a run of ``events`` events gets
    at least one chunk and at most ``events``, whatever the strategy."""
    config = ChunkingConfig().override(override, "t")
    counts = {events: config.loss_chunks(events) for events in range(1, 1100)}
    assert {events: count for events, count in counts.items() if not 1 <= count <= events} == {}


@pytest.mark.parametrize(
    "override, message",
    [
        ({"fixed_analysis_chunks": 0}, "chunking: fixed_analysis_chunks must be an integer >= 1, got 0"),
        ({"fixed_lookup_chunks": 2.5}, "chunking: fixed_lookup_chunks must be an integer >= 1, got 2.5"),
        ({"fixed_lookup_chunks": True}, "chunking: fixed_lookup_chunks must be an integer >= 1, got True"),
        ({"fixed_lookup_chunks": 1025}, "chunking: fixed_lookup_chunks must be at most 1024, got 1025"),
        ({"loss_strategy": "SOME"}, "chunking: loss_strategy must be one of ['FIXED_CHUNKS', 'DYNAMIC_CHUNKS'], got 'SOME'"),
        (
            {"chunks": 2},
            "chunking: unknown field(s) ['chunks']; known fields: ['dynamic_chunks_max', 'dynamic_events_per_analysis', "
            "'dynamic_locations_per_lookup', 'fill_pool_slots', 'fixed_analysis_chunks', 'fixed_lookup_chunks', 'lookup_strategy', "
            "'loss_strategy']",
        ),
        ([1, 2], "chunking: must be a JSON object, got list"),
        ({"fill_pool_slots": 1}, "chunking: fill_pool_slots must be true or false, got 1"),
        ({"fill_pool_slots": "yes"}, "chunking: fill_pool_slots must be true or false, got 'yes'"),
    ],
)
def test_bad_overrides_name_the_field(override, message):
    with pytest.raises(OasisInputError) as err:
        ChunkingConfig().override(override, "chunking")
    assert str(err.value) == message


@pytest.mark.parametrize(
    "override, events, slots, expected",
    [
        ({"fixed_analysis_chunks": 3}, 1447, 2, 4),  # rounded up: two full waves
        ({"fixed_analysis_chunks": 4}, 1447, 2, 4),  # already a multiple
        ({"fixed_analysis_chunks": 5}, 1447, 4, 8),
        ({"fixed_analysis_chunks": 1}, 1447, 8, 8),
        ({"fixed_analysis_chunks": 3}, 3, 2, 2),  # not more chunks than events: rounded down
        ({"fixed_analysis_chunks": 1}, 1, 2, 1),  # one event: one chunk, whatever the slots
        ({"fixed_analysis_chunks": 3}, 1447, 1, 3),  # one slot: nothing to fill
        ({"loss_strategy": DYNAMIC, "dynamic_events_per_analysis": 100}, 1447, 2, 16),  # 15 -> 16
        ({"loss_strategy": DYNAMIC, "dynamic_events_per_analysis": 1, "dynamic_chunks_max": 15}, 1447, 2, 14),  # capped: down
        ({"loss_strategy": DYNAMIC, "dynamic_events_per_analysis": 1}, 1447, 6, 198),  # 200 max -> 198
    ],
)
def test_fill_pool_slots_makes_the_loss_chunks_a_multiple_of_the_slots(override, events, slots, expected):
    assert ChunkingConfig().override(override | {"fill_pool_slots": True}, "t").loss_chunks(events, slots) == expected


def test_fill_pool_slots_is_off_by_default_and_then_changes_nothing():
    config = ChunkingConfig().override({"fixed_analysis_chunks": 3}, "t")
    assert config.fill_pool_slots is False
    assert config.loss_chunks(1447, 2) == 3

from __future__ import annotations

import pytest

from oasis_ops.chunking import ChunkingConfig, count_events
from oasis_ops.errors import OasisInputError

MODEL_SETTINGS = {"model_settings": {"event_set": {"default": "p", "options": [{"id": "p", "number_of_events": 1447}, {"id": "s", "number_of_events": 10}]}}}


def test_defaults_are_the_reference_systems():
    config = ChunkingConfig()
    assert config.lookup_chunks(50_000) == 1 and config.loss_chunks(None) == 1


@pytest.mark.parametrize(
    "override, locations, expected",
    [
        ({"fixed_lookup_chunks": 3}, 10, 3),
        ({"fixed_lookup_chunks": 30}, 10, 10),  # never more chunks than locations
        ({"lookup_strategy": "DYNAMIC_CHUNKS", "dynamic_locations_per_lookup": 4}, 10, 3),
        ({"lookup_strategy": "DYNAMIC_CHUNKS", "dynamic_locations_per_lookup": 1, "dynamic_chunks_max": 7}, 100, 7),
        ({"lookup_strategy": "DYNAMIC_CHUNKS"}, 0, 1),
    ],
)
def test_lookup_chunks(override, locations, expected):
    assert ChunkingConfig().override(override, "t").lookup_chunks(locations) == expected


@pytest.mark.parametrize(
    "override, events, expected",
    [
        ({"fixed_analysis_chunks": 4}, 1447, 4),
        ({"loss_strategy": "DYNAMIC_CHUNKS", "dynamic_events_per_analysis": 100}, 1447, 15),
        ({"loss_strategy": "DYNAMIC_CHUNKS"}, 1447, 200),
    ],
)
def test_loss_chunks(override, events, expected):
    assert ChunkingConfig().override(override, "t").loss_chunks(events) == expected


def test_dynamic_losses_need_an_event_count():
    with pytest.raises(OasisInputError, match="needs the event count"):
        ChunkingConfig(loss_strategy="DYNAMIC_CHUNKS").loss_chunks(None)


@pytest.mark.parametrize(
    "override, message",
    [
        ({"fixed_analysis_chunks": 0}, "fixed_analysis_chunks must be an integer >= 1, got 0"),
        ({"fixed_lookup_chunks": 2.5}, "fixed_lookup_chunks must be an integer >= 1"),
        ({"fixed_lookup_chunks": True}, "fixed_lookup_chunks must be an integer >= 1"),
        ({"loss_strategy": "SOME"}, "loss_strategy must be one of"),
        ({"chunks": 2}, "unknown field(s) ['chunks']"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_bad_overrides_name_the_field(override, message):
    with pytest.raises(OasisInputError) as err:
        ChunkingConfig().override(override, "chunking")
    assert message in str(err.value) and str(err.value).startswith("chunking")


def test_count_events():
    assert count_events({"model_settings": {"event_set": "p"}}, MODEL_SETTINGS) == 1447
    assert count_events({"model_settings": {"event_set": "s"}}, MODEL_SETTINGS) == 10
    assert count_events({}, MODEL_SETTINGS) == 1447  # the model's default event set
    assert count_events({"event_ids": [1, 2, 3]}, MODEL_SETTINGS) == 3
    assert count_events({"event_ids": [7], "model_settings": {"event_set": "s"}}, MODEL_SETTINGS) == 10
    assert count_events({"model_settings": {"event_set": "x"}}, MODEL_SETTINGS) is None

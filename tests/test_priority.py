"""The cluster policy that turns a run's priority into its task instances' priority weight."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from oasis_ops.priority import is_priority, run_priority, task_instance_mutation_hook


@pytest.mark.parametrize(
    ("conf", "expected"),
    [({"priority": 9}, 9), ({"priority": 1}, 1), ({}, 4), (None, 4), ({"priority": 11}, 4), ({"priority": True}, 4), ({"priority": "9"}, 4)],
)
def test_run_priority(conf, expected):
    assert run_priority(conf) == expected


def test_one_priority_check_for_the_policy_and_the_run_request():
    """``is_priority`` decides for both the cluster policy and ``RunRequest``: integers 1 to 10, no bools."""
    assert [value for value in (0, 1, 4, 10, 11, -1, True, False, 5.0, "5", None) if is_priority(value)] == [1, 4, 10]


def _ti(tags: list[str]) -> SimpleNamespace:
    return SimpleNamespace(task=SimpleNamespace(dag=SimpleNamespace(tags=tags)), priority_weight=1)


def test_hook_weights_oasis_task_instances_by_their_run_priority():
    ti = _ti(["oasis", "v2"])
    task_instance_mutation_hook(ti, SimpleNamespace(conf={"priority": 8}))
    assert ti.priority_weight == 8


def test_hook_leaves_other_dags_and_run_less_calls_alone():
    other, early = _ti(["etl"]), _ti(["oasis"])
    task_instance_mutation_hook(other, SimpleNamespace(conf={"priority": 8}))
    task_instance_mutation_hook(early, None)
    assert other.priority_weight == early.priority_weight == 1

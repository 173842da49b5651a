from __future__ import annotations

import pytest
from airflow.sdk import Param
from airflow.sdk.definitions.param import ParamsDict
from airflow.sdk.exceptions import ParamValidationError

from oasis_ops.errors import OasisInputError
from oasis_ops.params import RunRequest, dag_params, default_analysis_id

SETTINGS = {"model_settings": {"event_set": "p"}, "gul_output": True}


def airflow_validates(conf: dict) -> dict:
    """What Airflow does with a trigger's conf: merge it into the DAG params and validate."""
    params = ParamsDict(dag_params())
    params.update(conf)
    return params.validate()


def test_trigger_form_defaults():
    params = dag_params({"gul_output": True})
    assert params["priority"].value == 4
    assert params["action"].value == "generate_and_run"
    assert params["analysis_settings"].value == {"gul_output": True}
    assert all(isinstance(p, Param) for p in params.values())


ID_PATTERN = "'^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'"


@pytest.mark.parametrize(
    "conf, reason",
    [
        ({"priority": 11}, "priority: 11 is greater than the maximum of 10"),
        ({"priority": 0}, "priority: 0 is less than the minimum of 1"),
        ({"priority": "high"}, "priority: 'high' is not of type 'integer'"),
        ({"action": "delete"}, "action: 'delete' is not one of ['generate_and_run', 'generate_inputs', 'run']"),
        ({"analysis_id": "../evil"}, f"analysis_id: '../evil' does not match {ID_PATTERN}"),
        ({"analysis_id": "a b"}, f"analysis_id: 'a b' does not match {ID_PATTERN}"),
        ({"analysis_settings": "not an object"}, "analysis_settings: 'not an object' is not of type 'null', 'object'"),
        ({"chunking": 3}, "chunking: 3 is not of type 'null', 'object'"),
        ({"location_file": 7}, "location_file: 7 is not of type 'null', 'string'"),
    ],
)
def test_airflow_refuses_bad_conf_at_trigger(conf, reason):
    with pytest.raises(ParamValidationError) as err:
        airflow_validates(conf)
    # The first line names the param and why; jsonschema's details (schema, instance) follow.
    assert str(err.value).splitlines()[0] == f"Invalid input for param {reason}"


def test_airflow_accepts_a_good_conf():
    validated = airflow_validates({"location_file": "exposure/loc.csv", "priority": 10, "analysis_id": "Port-2026.Q1_a"})
    assert validated["priority"] == 10


def test_default_analysis_id_is_safe():
    assert default_analysis_id("manual__2026-11-25T21:00:00.123+00:00") == "manual__2026-11-25T21_00_00.123_00_00"
    assert default_analysis_id("::") == "analysis"


def test_run_request_from_params():
    request = RunRequest.from_params(
        {"location_file": "exposure/loc.csv", "accounts_file": "", "analysis_settings": SETTINGS}, "scheduled__x"
    )
    assert request.exposure == {"location": "exposure/loc.csv"}
    assert request.analysis_id == "scheduled__x"
    assert request.generates_inputs and request.runs_losses
    run_only = RunRequest.from_params({"action": "run", "analysis_id": "a1", "analysis_settings": SETTINGS}, "r")
    assert not run_only.generates_inputs and run_only.runs_losses


@pytest.mark.parametrize(
    "params, message",
    [
        ({"analysis_settings": SETTINGS}, "location_file: required for action 'generate_and_run' (give an OED location file)"),
        ({"location_file": "l.csv"}, "analysis_settings: required for action 'generate_and_run'"),
        ({"action": "run", "analysis_settings": SETTINGS, "location_file": "l.csv"}, (
            "location_file: action 'run' reuses the inputs generated earlier for the analysis id; leave the exposure "
            "files empty or use 'generate_and_run'"
        )),
        ({"location_file": "l.csv", "analysis_settings": SETTINGS, "analysis_id": ".hidden"}, (
            "analysis_id: '.hidden' is not a safe name; use 1-100 letters, digits, '_', '-' or '.', starting with a letter or digit"
        )),
        ({"location_file": "l.csv", "analysis_settings": SETTINGS, "priority": 42}, "priority: 42 is not an integer from 1 to 10"),
        ({"location_file": "l.csv", "analysis_settings": SETTINGS, "chunking": [1]}, "chunking: expected a JSON object, got list"),
        ({"location_file": "l.csv", "action": "nope"}, "action: 'nope' is not one of ['generate_and_run', 'generate_inputs', 'run']"),
        ({"location_file": 7, "analysis_settings": SETTINGS}, "location_file: expected a path string, got int"),
        ({"location_file": "l.csv", "analysis_settings": "gul"}, "analysis_settings: expected a JSON object, got str"),
    ],
)
def test_run_request_names_the_bad_field(params, message):
    with pytest.raises(OasisInputError) as err:
        RunRequest.from_params(params, "run")
    assert str(err.value) == message


def test_generate_inputs_needs_no_settings():
    request = RunRequest.from_params({"action": "generate_inputs", "location_file": "l.csv"}, "r")
    assert request.generates_inputs and not request.runs_losses

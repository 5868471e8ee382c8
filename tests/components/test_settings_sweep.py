"""`mlops:workload.training.sweep`: every bad value refused with its key, the value and what is
allowed; the trials planned once, the same on every run of the same config; refused for a
workload whose image reads no hyperparameters (the forecaster) or that the platform does not
gate on an objective."""

from __future__ import annotations

import copy
from typing import Any

import pulumi
import pytest

from components.settings.stack import parse
from components.settings.sweep import MAX_TRIALS, plan_trials
from preflight.offline import stack_config

BYOC = {
    "contract": "sagemaker",
    "image": {"build": {"context": "examples/digits"}},
    "training": {"hyperparameters": {"num_round": 60, "max_depth": 4}},
    "objective": {"key": "accuracy"},
}
GRID = {"parameters": {"max_depth": [3, 5], "eta": [0.1, 0.3, 0.5]}, "max_parallel": 2}
RANDOM = {
    "strategy": "random",
    "parameters": {
        "max_depth": [2, 4, 6],
        "eta": {"min": 0.05, "max": 0.5, "scale": "log"},
        "num_round": {"min": 10, "max": 200, "type": "int"},
    },
    "max_trials": 6,
    "max_parallel": 2,
    "tolerated_failures": 1,
    "seed": 7,
}


def workload(sweep: Any, **changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(BYOC)
    raw["training"]["sweep"] = sweep
    raw.update(changes)
    return raw


def sweep_of(sweep: Any):
    return parse({"workload": workload(sweep)}).workload.training.sweep


def test_no_sweep_is_one_training():
    assert sweep_of(None) is None
    assert parse({"workload": BYOC}).workload.training.sweep is None


def test_a_grid_tries_every_combination_numbered_in_name_order_over_the_stack_values():
    sweep = sweep_of(GRID)
    assert [t.id for t in sweep.trials] == ["t01", "t02", "t03", "t04", "t05", "t06"]
    assert [dict(t.values) for t in sweep.trials] == [
        {"eta": eta, "max_depth": depth} for eta in (0.1, 0.3, 0.5) for depth in (3, 5)
    ]
    # The trial's values over the stack's training.hyperparameters.
    assert dict(sweep.trials[0].hyperparameters) == {"num_round": 60, "max_depth": 3, "eta": 0.1}
    assert (sweep.max_parallel, sweep.tolerated_failures) == (2, 0)


def test_a_random_search_is_the_same_on_every_run_and_whatever_the_key_order():
    first = sweep_of(RANDOM).trials
    again = sweep_of(copy.deepcopy(RANDOM)).trials
    shuffled = {**RANDOM, "parameters": dict(reversed(list(RANDOM["parameters"].items())))}
    assert first == again == sweep_of(shuffled).trials
    assert len(first) == 6 and len({str(dict(t.values)) for t in first}) == 6
    for trial in first:
        values = trial.values
        assert values["max_depth"] in (2, 4, 6)
        assert 0.05 <= values["eta"] <= 0.5 and len(repr(values["eta"])) <= 10  # 6 digits
        assert isinstance(values["num_round"], int) and 10 <= values["num_round"] <= 200
    # Another seed draws other trials.
    assert sweep_of({**RANDOM, "seed": 8}).trials != first


def test_a_log_scale_draws_across_the_decades():
    spec = sweep_of(
        {
            "strategy": "random",
            "parameters": {"eta": {"min": 0.0001, "max": 1, "scale": "log"}},
            "max_trials": 100,
        }
    ).spec
    etas = [t.values["eta"] for t in plan_trials(spec, {})]
    # Log-uniform: about a quarter of the draws in each decade, not 90 % in the top one.
    assert sum(e < 0.01 for e in etas) > 30 and sum(e >= 0.1 for e in etas) < 40


@pytest.mark.parametrize(
    ("sweep", "key", "allowed"),
    [
        ({**GRID, "colour": 1}, "sweep.colour", "unknown key"),
        ({**GRID, "strategy": "bayesian"}, "sweep.strategy", "allowed: grid, random"),
        ({"parameters": {}}, "sweep.parameters", "at least one hyperparameter"),
        ({"parameters": [1]}, "sweep.parameters", "it must be a map"),
        ({"parameters": {"max depth": [1]}}, "sweep.parameters.max depth", "hyperparameter name"),
        ({"parameters": {"eta": 0.1}}, "sweep.parameters.eta", "a list of values"),
        ({"parameters": {"eta": []}}, "sweep.parameters.eta", "a list of 1 to 100 values"),
        ({"parameters": {"eta": [0.1, 0.1]}}, "sweep.parameters.eta", "listed twice"),
        ({"parameters": {"eta": [None]}}, "sweep.parameters.eta", "a string, a number"),
        ({"parameters": {"eta": [[1]]}}, "sweep.parameters.eta", "a string, a number"),
        ({"parameters": {"eta": [float("nan")]}}, "sweep.parameters.eta", "finite"),
        (
            {"parameters": {"eta": {"min": 0.1, "max": 0.5}}},
            "sweep.parameters.eta",
            "use strategy: random",
        ),
        (
            {
                "strategy": "random",
                "parameters": {"eta": {"min": 0.5, "max": 0.1}},
                "max_trials": 2,
            },
            "sweep.parameters.eta.max",
            "above min (0.5)",
        ),
        (
            {"strategy": "random", "parameters": {"eta": {"min": "a", "max": 1}}, "max_trials": 2},
            "sweep.parameters.eta.min",
            "finite number",
        ),
        (
            {
                "strategy": "random",
                "parameters": {"eta": {"min": 0, "max": 1, "scale": "log"}},
                "max_trials": 2,
            },
            "sweep.parameters.eta.min",
            "log scale needs min above 0",
        ),
        (
            {
                "strategy": "random",
                "parameters": {"n": {"min": 1.5, "max": 4, "type": "int"}},
                "max_trials": 2,
            },
            "sweep.parameters.n",
            "whole numbers",
        ),
        (
            {"strategy": "random", "parameters": {"n": {"min": 1, "max": 4, "step": 1}}},
            "sweep.parameters.n.step",
            "unknown key",
        ),
        (
            {"strategy": "random", "parameters": {"n": {"min": 1, "max": 4, "scale": "exp"}}},
            "sweep.parameters.n.scale",
            "allowed: linear, log",
        ),
        ({"strategy": "random", "parameters": {"n": [1, 2]}}, "sweep.max_trials", "draws"),
        (
            {"strategy": "random", "parameters": {"n": [1, 2]}, "max_trials": 3},
            "sweep.max_trials",
            "only 2 distinct combinations",
        ),
        ({**GRID, "max_trials": 4}, "sweep.parameters", "the grid has 6 combinations"),
        (
            {"parameters": {"a": list(range(11)), "b": list(range(10))}},
            "sweep.parameters",
            f"at most {MAX_TRIALS} trials",
        ),
        ({**GRID, "max_trials": 0}, "sweep.max_trials", "from 1 to 100"),
        ({**GRID, "max_parallel": 0}, "sweep.max_parallel", "from 1"),
        ({**GRID, "max_parallel": 7}, "sweep.max_parallel", "number of trials (6)"),
        ({**GRID, "max_parallel": "2"}, "sweep.max_parallel", "an integer"),
        ({**GRID, "tolerated_failures": 6}, "sweep.tolerated_failures", "at least one must"),
        ({**GRID, "tolerated_failures": -1}, "sweep.tolerated_failures", "from 0"),
        ({**GRID, "seed": 3}, "sweep.seed", "seed is for strategy: random"),
        ({**RANDOM, "seed": -1}, "sweep.seed", "from 0"),
        ("grid", "workload.training.sweep", "a map of keys"),
    ],
)
def test_bad_values_are_refused_naming_key_value_and_allowed(sweep, key, allowed):
    with pytest.raises(pulumi.RunError) as err:
        sweep_of(sweep)
    message = str(err.value)
    assert message.startswith("mlops:workload.training.sweep"), message
    assert key in message and allowed in message, message


def test_a_secret_in_a_swept_value_is_refused_without_echoing_it():
    token = "AKIAIOSFODNN7EXAMPLE"
    with pytest.raises(pulumi.RunError) as err:
        sweep_of({"parameters": {"api": [token]}})
    assert "sweep.parameters.api" in str(err.value) and token not in str(err.value)


def test_the_forecaster_cannot_sweep_its_image_reads_no_hyperparameters():
    forecaster = stack_config("prod")["mlops:workload"]
    forecaster = copy.deepcopy(forecaster)
    forecaster["training"]["sweep"] = GRID
    with pytest.raises(pulumi.RunError) as err:
        parse({"workload": forecaster})
    message = str(err.value)
    assert message.startswith("mlops:workload.training.sweep:")
    assert "only the sagemaker contract" in message and "every trial would train" in message


@pytest.mark.parametrize(
    "changes",
    [
        {"steps": {"gate": {"command": ["gate"]}}},
        {"objective": None, "promotion": "every-trained-run"},
    ],
)
def test_a_sweep_needs_the_platform_gate_on_an_objective(changes):
    with pytest.raises(pulumi.RunError, match=r"workload.training.sweep: .*workload.objective"):
        parse({"workload": workload(GRID, **changes)})

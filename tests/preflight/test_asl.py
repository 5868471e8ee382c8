"""preflight/asl.py against the Step Functions Developer Guide's own examples ("Intrinsic
functions for JSONPath states"; "InputPath, Parameters and ResultSelector"; "ResultPath"), and
the program's state machine walked as run_local walks it."""

from __future__ import annotations

import json
import re

import pytest

from preflight.asl import AslError, choice_matches, evaluate, render, state_output
from preflight.offline import Plan

CONTEXT = {"Execution": {"Name": "exec-1", "StartTime": "2026-11-22T03:00:00.123Z"}}


@pytest.mark.parametrize(
    ("expression", "data", "expected"),
    [
        # Guide: States.Format("Hello, my name is {}.", $.name) with {"name": "Arnav"}.
        (
            "States.Format('Hello, my name is {}.', $.name)",
            {"name": "Arnav"},
            "Hello, my name is Arnav.",
        ),
        # Guide: States.StringSplit($.inputString, $.splitter), "1,2,3,4,5" and ",".
        (
            "States.StringSplit($.inputString, $.splitter)",
            {"inputString": "1,2,3,4,5", "splitter": ","},
            ["1", "2", "3", "4", "5"],
        ),
        # Guide: "each character of the delimiter string is a delimiter".
        (
            "States.StringSplit($.inputString, $.splitter)",
            {"inputString": "This.is+a,test=string", "splitter": ".+,="},
            ["This", "is", "a", "test", "string"],
        ),
        # Guide: States.ArrayGetItem($.inputArray, $.index) with [1..9] and 5 -> 6.
        (
            "States.ArrayGetItem($.inputArray, $.index)",
            {"inputArray": [1, 2, 3, 4, 5, 6, 7, 8, 9], "index": 5},
            6,
        ),
        # Guide: States.JsonMerge($.json1, $.json2, false): a shallow merge, json2 wins.
        (
            "States.JsonMerge($.json1, $.json2, false)",
            {
                "json1": {"a": {"a1": 1, "a2": 2}, "b": 2},
                "json2": {"a": {"a3": 1, "a4": 2}, "c": 3},
            },
            {"a": {"a3": 1, "a4": 2}, "b": 2, "c": 3},
        ),
        # Guide: States.JsonToString($.someJson) is compact JSON.
        (
            "States.JsonToString($.someJson)",
            {"someJson": {"name": "Foo", "year": 2020}},
            '{"name":"Foo","year":2020}',
        ),
        ("States.ArrayLength($.a)", {"a": [1, 2, 3]}, 3),
        ("States.MathAdd($.v, 1)", {"v": 110}, 111),
    ],
)
def test_intrinsics_give_the_documented_results(expression, data, expected) -> None:
    assert evaluate(expression, data, CONTEXT) == expected


def test_context_object_paths_and_nested_calls() -> None:
    expression = "States.ArrayGetItem(States.StringSplit($$.Execution.StartTime, 'T'), 0)"
    assert evaluate(expression, {}, CONTEXT) == "2026-11-22"
    assert evaluate("$$.Execution.Name", {}, CONTEXT) == "exec-1"


def test_unknown_functions_and_missing_paths_fail_loudly() -> None:
    with pytest.raises(AslError, match=r"States\.Hash"):
        evaluate("States.Hash($.a, 'SHA-1')", {"a": "x"}, CONTEXT)
    with pytest.raises(AslError, match=r"\$\.missing"):
        evaluate("$.missing", {}, CONTEXT)


def test_parameters_result_path_and_choice() -> None:
    rendered = render({"a.$": "$.x", "fixed": {"b.$": "$.y"}}, {"x": 1, "y": 2}, CONTEXT)
    assert rendered == {"a": 1, "fixed": {"b": 2}}
    # Guide "ResultPath": null discards the result and passes the input on.
    assert state_output({"ResultPath": None}, {"in": 1}, {"out": 2}, CONTEXT) == {"in": 1}
    assert state_output({"ResultPath": "$.r"}, {"in": 1}, 2, CONTEXT) == {"in": 1, "r": 2}
    rule = {"Variable": "$.t.reason", "StringEquals": "image-push", "Next": "X"}
    assert choice_matches(rule, {"t": {"reason": "image-push"}}, CONTEXT)
    assert not choice_matches(rule, {"t": {"reason": "manual"}}, CONTEXT)
    assert not choice_matches(rule, {}, CONTEXT)


def test_the_declared_pipeline_renders_the_run_id_the_app_accepts(dev_plan: Plan) -> None:
    """Walk the program's own Defaults/Prepare states: the RUN_ID passed to every step is
    `<start>Z-<execution name>`, which app.settings accepts."""
    from mlops_contract import RUN_ID_PATTERN

    machine = json.loads(dev_plan.one("aws:sfn/stateMachine:StateMachine").inputs["definition"])
    data = {}
    name = machine["StartAt"]
    while machine["States"][name]["Type"] == "Pass":
        state = machine["States"][name]
        data = state_output(state, data, render(state["Parameters"], data, CONTEXT), CONTEXT)
        name = state["Next"]
    assert data["run"] == {"id": "20261122T030000Z-exec-1", "date": "2026-11-22"}
    assert re.fullmatch(RUN_ID_PATTERN, data["run"]["id"])
    assert data["trigger"]["reason"] == "manual"

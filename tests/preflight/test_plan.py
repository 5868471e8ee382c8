"""`python -m preflight.plan`: the tree, the JSON document, the stack diff and the CLI."""

from __future__ import annotations

import json

import pytest

from preflight import plan as plan_module
from preflight.costs import estimate_cost
from preflight.offline import Plan
from preflight.plan import Report, diff, findings, render, render_diff, retained_on_destroy


def report(plan: Plan) -> Report:
    return Report(plan, estimate_cost(plan), findings(plan), retained_on_destroy(plan))


# --- output --------------------------------------------------------------------------------------


def test_json_has_exactly_the_documented_keys(dev_plan: Plan) -> None:
    data = report(dev_plan).as_json()
    assert list(data) == [
        "stack",
        "resources",
        "monthly_cost_usd",
        "cost_lines",
        "assumptions",
        "findings",
        "retained_on_destroy",
    ]
    assert data["monthly_cost_usd"] == pytest.approx(
        sum(line["monthly_usd"] or 0 for line in data["cost_lines"]), abs=0.05
    )
    assert {"fargate_spot_discount", "prices"} <= data["assumptions"].keys()
    service = next(r for r in data["resources"] if r["name"] == "inference-service")
    assert service["settings"]["desiredCount"] == 1
    json.dumps(data)  # serialisable as is


def test_text_shows_tree_settings_costs_and_assumptions(prod_plan: Plan) -> None:
    text = render(report(prod_plan))
    assert "inference  [mlops:index:InferenceService]" in text
    assert "├─ inference-service  [ecs:Service]" in text
    assert "retentionInDays=90" in text
    assert "TOTAL prod: $" in text
    assert "fargate_spot_discount = 0.7" in text
    assert "Policy findings (0)" in text


def test_diff_shows_resource_and_cost_changes(dev_plan: Plan, prod_plan: Plan) -> None:
    change = diff(report(dev_plan), report(prod_plan))
    assert any(r["name"] == "inference-waf" for r in change["added"])
    vpc = next(r for r in change["changed"] if r["name"] == "network-vpc")
    assert vpc["settings"]["natGateways.strategy"] == {"from": "None", "to": "OnePerAz"}
    assert change["monthly_cost_usd"]["change"] > 0
    text = render_diff(change)
    assert "+ inference-waf" in text
    assert "Monthly cost: dev $" in text


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert plan_module.main(["dev", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["stack"] == "dev"


@pytest.mark.parametrize("stack", ["staging", "../Pulumi", "dev;rm"])
def test_cli_bad_stack_is_one_line_exit_2(stack: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert plan_module.main([stack]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ")
    assert captured.err.count("\n") == 1


def test_cli_config_error_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert plan_module.main(["dev", "--set", "inference.cpu=3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "mlops:inference.cpu: 3 is not allowed" in err
    assert "Traceback" not in err


def test_cli_assume_replaces_an_assumption(capsys: pytest.CaptureFixture[str]) -> None:
    assert plan_module.main(["prod", "--json", "--assume", "train_hours_per_run=2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["assumptions"]["train_hours_per_run"]["value"] == 2
    assert "[overridden]" in data["assumptions"]["train_hours_per_run"]["note"]


@pytest.mark.parametrize("item", ["no_such_thing=1", "train_hours_per_run=two"])
def test_cli_bad_assumption_is_one_line_exit_2(
    item: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert plan_module.main(["dev", "--assume", item]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_dev_destroy_leaves_nothing_behind(dev_plan: Plan) -> None:
    assert report(dev_plan).retained == []
    assert "nothing: `pulumi destroy` deletes every resource" in render(report(dev_plan))


def test_prod_lists_what_it_keeps_on_purpose(prod_plan: Plan) -> None:
    kept = {entry["resource"]: entry["why"] for entry in report(prod_plan).retained}
    assert "protect" in kept["store-fs"]
    assert "recovery points" in kept["store-backup"]
    assert set(kept) == {
        "store-fs",
        "store-backup",
        "image-repo",
        "inference-access-logs",
        "inference-alb",
        "inference-alarms-key",
    }
    assert "Retained on destroy (6)" in render(report(prod_plan))

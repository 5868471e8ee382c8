"""The GitHub Actions workflows, checked the way a reviewer would (actionlint is not available).

test.yml: ruff and the README's test command on every push and PR. preview.yml: a Pulumi preview
of dev and prod on PRs, with the policy pack and a PR comment. deploy.yml: `pulumi up` of dev on
main, prod behind an approved environment. AWS only through OIDC, every action pinned.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
NAMES = ("test", "preview", "deploy")
FULL_SHA = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
EXACT_TAG = re.compile(r"^[\w.-]+/[\w./-]+@v\d+\.\d+\.\d+$")
VERSION_COMMENT = re.compile(r"#\s*v\d+\.\d+\.\d+")


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((WORKFLOWS / f"{name}.yml").read_text())


def triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    # YAML 1.1 reads the bare key `on` as the boolean True.
    value = workflow.get("on", workflow.get(True))
    if isinstance(value, list):
        return dict.fromkeys(value)
    return value or {}


def steps(workflow: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for job_id, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            yield job_id, job, step


def commands(workflow: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """The pulumi/actions steps that run a command (the others only install the CLI)."""
    return [u for u in uses(workflow, "pulumi/actions") if "command" in u[2].get("with", {})]


def uses(workflow: dict[str, Any], action: str) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [
        (job_id, job, step)
        for job_id, job, step in steps(workflow)
        if str(step.get("uses", "")).startswith(f"{action}@")
    ]


def readme_test_command() -> str:
    """The first shell line in the README's code blocks that runs pytest."""
    blocks = re.findall(r"```(?:bash|sh)\n(.+?)```", (ROOT / "README.md").read_text(), re.S)
    return next(line.strip() for b in blocks for line in b.splitlines() if "pytest" in line)


@pytest.mark.parametrize("name", NAMES)
def test_every_action_is_pinned(name: str) -> None:
    text = (WORKFLOWS / f"{name}.yml").read_text()
    used = re.findall(r"uses:\s*(\S+)(.*)", text)
    assert used
    for reference, rest in used:
        assert FULL_SHA.match(reference) or EXACT_TAG.match(reference), reference
        if FULL_SHA.match(reference):
            assert VERSION_COMMENT.search(rest), f"{reference}: add the version as a comment"
    for job in load(name)["jobs"].values():
        image = job.get("container")
        image = image.get("image") if isinstance(image, dict) else image
        if image:
            assert re.search(r":\d+\.\d+\.\d+", image), f"container {image} is not pinned"


@pytest.mark.parametrize("name", NAMES)
def test_aws_only_through_oidc(name: str) -> None:
    workflow = load(name)
    text = (WORKFLOWS / f"{name}.yml").read_text()
    assert "aws-access-key-id" not in text
    assert "aws-secret-access-key" not in text
    assert not re.search(r"AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY|SESSION_TOKEN)", text)
    assert "PULUMI_ACCESS_TOKEN" not in text  # Pulumi Cloud also through OIDC
    assert "pull_request_target" not in triggers(workflow)
    for _, job, step in uses(workflow, "aws-actions/configure-aws-credentials"):
        # The role ARN is the stack's own output (components/ci_trust.py), read just before.
        assert step["with"]["role-to-assume"] == "${{ steps.role.outputs.arn }}"
        (reader,) = [s for s in job["steps"] if s.get("id") == "role"]
        role = "ci_preview_role_arn" if name == "preview" else "ci_deploy_role_arn"
        assert f"pulumi stack output {role}" in reader["run"]
        assert step["with"]["aws-region"] == "us-east-1"
        permissions = {**workflow.get("permissions", {}), **job.get("permissions", {})}
        assert permissions.get("id-token") == "write"


def test_test_workflow_runs_ruff_and_the_readme_command() -> None:
    workflow = load("test")
    assert {"push", "pull_request"} <= triggers(workflow).keys()
    commands = "\n".join(str(step.get("run", "")) for _, _, step in steps(workflow))
    assert "ruff format --check" in commands
    # .ci/run is the README's test command on a fresh checkout: run it, and make sure it is.
    assert ".ci/run" in commands
    command = readme_test_command()
    assert "ruff check" in command
    assert "pytest" in command
    assert command.split("&& ", 1)[-1] in (ROOT / ".ci" / "run").read_text()
    assert "ruff check ." in (ROOT / ".ci" / "run").read_text()
    assert not uses(workflow, "aws-actions/configure-aws-credentials")


def test_preview_comments_on_prs_with_the_policy_pack_for_both_stacks() -> None:
    workflow = load("preview")
    assert "pull_request" in triggers(workflow)
    assert workflow["permissions"]["pull-requests"] == "write"
    (_, job, step), *others = commands(workflow)
    assert not others
    assert set(job["strategy"]["matrix"]["stack"]) == {"dev", "prod"}
    assert step["with"]["command"] == "preview"
    assert step["with"]["comment-on-pr"] is True
    assert step["with"]["policyPacks"] == "policy"
    assert step["with"]["stack-name"].endswith("/${{ matrix.stack }}")
    assert "environment" not in job  # a PR preview must not wait for the prod approval
    names = [s.get("uses", "").split("@")[0] for _, _, s in steps(workflow)]
    preview = len(names) - 1 - names[::-1].index("pulumi/actions")
    assert names.index("aws-actions/configure-aws-credentials") < preview
    # The role ARN is a stack output: read after logging in to Pulumi Cloud.
    assert names.index("pulumi/auth-actions") < names.index("pulumi/actions")


def test_deploy_updates_dev_on_main_and_prod_after_approval() -> None:
    workflow = load("deploy")
    assert triggers(workflow)["push"]["branches"] == ["main"]
    ups = {
        step["with"]["stack-name"].rsplit("/", 1)[-1]: (job_id, job, step)
        for job_id, job, step in commands(workflow)
    }
    assert set(ups) == {"dev", "prod"}
    for _, _, step in ups.values():
        assert step["with"]["command"] == "up"
        assert step["with"]["policyPacks"] == "policy"
    dev_id, _, _ = ups["dev"]
    _, prod_job, _ = ups["prod"]
    assert prod_job["environment"] == "prod"
    assert dev_id in (
        [prod_job["needs"]] if isinstance(prod_job["needs"], str) else prod_job["needs"]
    )
    for _, job, _ in ups.values():
        assert job["concurrency"]["cancel-in-progress"] is False


def test_workflows_name_existing_stacks_and_the_policy_pack() -> None:
    assert (ROOT / "Pulumi.dev.yaml").exists()
    assert (ROOT / "Pulumi.prod.yaml").exists()
    assert (ROOT / "policy" / "PulumiPolicy.yaml").exists()
    for name in ("preview", "deploy"):
        commands = "\n".join(str(step.get("run", "")) for _, _, step in steps(load(name)))
        assert "pip install -q -r requirements.txt" in commands
        assert "policy/venv/bin/pip install -q -r policy/requirements.txt" in commands

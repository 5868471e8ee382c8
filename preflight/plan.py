"""Offline plan: the resource tree, a monthly cost estimate and the policy findings of a stack.

    python -m preflight.plan dev               # tree, itemised monthly cost, assumptions, findings
    python -m preflight.plan prod --json       # the same as one JSON document
    python -m preflight.plan dev --diff prod   # what changes, resource by resource and in cost
    python -m preflight.plan prod --set inference.capacity=gpu-ec2   # what-if, no file edited

It evaluates `__main__.py` with the stack's config under the mocks the tests use
(`preflight.offline`): no cloud account, no cloud calls. The estimate reads what the program
declares (task sizes, capacity strategies, scaling schedules, NAT gateways, keys, rules...) and
prices it with the dated table in `preflight/prices.py`; usage no program can know (how long a
training run takes) comes from the named assumptions printed with it. A resource type the table
does not price is reported as unknown, never as $0. The findings come from `policy.checks`, the
functions the CrossGuard pack runs.

Exit codes: 0 plan printed (findings do not fail it), 2 bad stack name or config error (one line
on stderr).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import yaml

from policy import checks
from policy.checks import looks_secret
from preflight import costs, prices
from preflight.costs import (
    ASG,
    CLUSTER,
    CLUSTER_PROVIDERS,
    COMPONENT_PREFIXES,
    ECR_LIFECYCLE,
    ECR_REPOSITORY,
    EFS,
    EFS_BACKUP,
    EVENT_RULE,
    LAUNCH_TEMPLATE,
    LOAD_BALANCERS,
    LOG_GROUP,
    SCALING_TARGET,
    SCHEDULED_ACTION,
    SERVICE,
    STATE_MACHINE,
    TASK_DEFINITION,
    VPC,
    Estimate,
    as_list,
    as_number,
    ebs_gb,
    estimate_cost,
    get_path,
    instance_types,
    json_document,
    kept_images,
    main_path_states,
)
from preflight.offline import ROOT, Plan, Resource, run_stack

STACK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def short_type(type_: str) -> str:
    """`aws:ecs/service:Service` -> `ecs:Service`; components and other packages stay readable."""
    parts = type_.split(":")
    if parts[0] == "aws" and len(parts) == 3:
        return f"{parts[1].split('/')[0]}:{parts[2]}"
    if parts[0] == "docker" and len(parts) == 3:
        return f"docker:{parts[2]}"
    return type_


def _money(value: float | None) -> str:
    return "unknown" if value is None else f"${value:,.2f}"


# --- what matters per resource -------------------------------------------------------------------

_SETTINGS: dict[str, tuple[str, ...]] = {
    VPC: ("cidrBlock", "numberOfAvailabilityZones", "natGateways.strategy", "subnetStrategy"),
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": (
        "ipProtocol",
        "fromPort",
        "toPort",
        "cidrIpv4",
        "cidrIpv6",
    ),
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": (
        "ipProtocol",
        "fromPort",
        "toPort",
        "cidrIpv4",
        "cidrIpv6",
    ),
    EFS: ("encrypted", "performanceMode", "throughputMode", "lifecyclePolicies"),
    "aws:efs/accessPoint:AccessPoint": ("posixUser", "rootDirectory.path"),
    EFS_BACKUP: ("backupPolicy.status",),
    ECR_REPOSITORY: (
        "imageTagMutability",
        "imageScanningConfiguration.scanOnPush",
        "encryptionConfigurations",
    ),
    CLUSTER: ("settings",),
    CLUSTER_PROVIDERS: ("capacityProviders", "defaultCapacityProviderStrategies"),
    "aws:ecs/capacityProvider:CapacityProvider": (
        "autoScalingGroupProvider.managedScaling.targetCapacity",
        "autoScalingGroupProvider.managedTerminationProtection",
    ),
    TASK_DEFINITION: ("family", "cpu", "memory", "requiresCompatibilities"),
    SERVICE: (
        "desiredCount",
        "launchType",
        "capacityProviderStrategies",
        "networkConfiguration.assignPublicIp",
        "deploymentCircuitBreaker",
    ),
    SCALING_TARGET: ("minCapacity", "maxCapacity"),
    SCHEDULED_ACTION: ("schedule", "timezone", "scalableTargetAction"),
    "aws:appautoscaling/policy:Policy": (
        "targetTrackingScalingPolicyConfiguration.predefinedMetricSpecification."
        "predefinedMetricType",
        "targetTrackingScalingPolicyConfiguration.targetValue",
    ),
    "aws:lb/loadBalancer:LoadBalancer": (
        "loadBalancerType",
        "internal",
        "accessLogs.enabled",
        "enableDeletionProtection",
    ),
    "aws:lb/listener:Listener": ("port", "protocol", "sslPolicy"),
    "aws:lb/targetGroup:TargetGroup": ("port", "protocol", "targetType", "healthCheck.path"),
    LOG_GROUP: ("retentionInDays",),
    "aws:cloudwatch/metricAlarm:MetricAlarm": (
        "metricName",
        "statistic",
        "extendedStatistic",
        "comparisonOperator",
        "threshold",
    ),
    ASG: ("minSize", "maxSize", "desiredCapacity", "protectFromScaleIn"),
    LAUNCH_TEMPLATE: ("instanceType", "metadataOptions.httpTokens"),
    STATE_MACHINE: ("type",),
    EVENT_RULE: ("scheduleExpression", "state"),
    "aws:wafv2/webAcl:WebAcl": ("scope",),
    "aws:kms/key:Key": ("enableKeyRotation",),
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": ("policyArn",),
    "aws:sns/topicSubscription:TopicSubscription": ("protocol",),
    "docker:index/image:Image": ("build.platform", "buildOnPreview"),
}


def _container_summary(container: Mapping[str, Any]) -> str:
    parts = [str(container.get("name", "?"))]
    for port in as_list(container.get("portMappings")):
        parts.append(f":{int(as_number(get_path(port, 'containerPort')))}")
    for key in ("cpu", "memory"):
        if container.get(key):
            parts.append(f"{key} {container[key]}")
    gpus = [
        r for r in as_list(container.get("resourceRequirements")) if get_path(r, "type") == "GPU"
    ]
    if gpus:
        parts.append(f"gpu {get_path(gpus[0], 'value')}")
    if container.get("healthCheck"):
        parts.append("health")
    if container.get("user"):
        parts.append(f"user {container['user']}")
    if container.get("readonlyRootFilesystem"):
        parts.append("ro-root")
    return " ".join(parts)


def _plain(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def settings_of(resource: Resource) -> dict[str, Any]:
    """The settings that matter for one resource (sizes, capacity, ports, retention...)."""
    inputs = resource.inputs
    found: dict[str, Any] = {}
    for path in _SETTINGS.get(resource.type, ()):
        value = get_path(inputs, path)
        if value is not None and value != [] and value != {}:
            found[path.rsplit(".", 1)[-1] if path.count(".") > 1 else path] = _plain(value)
    if resource.type == TASK_DEFINITION:
        found["containers"] = [_container_summary(c) for c in checks.containers(inputs)]
    elif resource.type in LOAD_BALANCERS:
        found["subnets"] = len(
            as_list(inputs.get("subnets")) or as_list(inputs.get("subnetMappings"))
        )
    elif resource.type in checks.LISTENER_TYPES:
        found["actions"] = [
            f"{get_path(a, 'type')}"
            + (f"->{get_path(a, 'redirect.protocol')}" if get_path(a, "type") == "redirect" else "")
            for a in as_list(inputs.get("defaultActions"))
        ]
        if inputs.get("certificateArn"):
            found["certificate"] = True
    elif resource.type == ASG:
        found["instanceTypes"] = instance_types(inputs)
    elif resource.type == LAUNCH_TEMPLATE:
        found["ebsGb"] = ebs_gb(inputs)
    elif resource.type == STATE_MACHINE:
        found["states"] = list(main_path_states(json_document(inputs.get("definition"))))
    elif resource.type == EVENT_RULE and inputs.get("eventPattern"):
        pattern = json_document(inputs.get("eventPattern")) or {}
        found["source"] = pattern.get("source")
        found["detailType"] = pattern.get("detail-type")
    elif resource.type == ECR_LIFECYCLE:
        found["keep"] = dict(kept_images(inputs))
    elif resource.type == "aws:wafv2/webAcl:WebAcl":
        found["rules"] = [get_path(r, "name") for r in as_list(inputs.get("rules"))]
    elif resource.type == "aws:iam/rolePolicy:RolePolicy":
        statements = get_path(json_document(inputs.get("policy")) or {}, "Statement") or []
        found["actions"] = sorted(
            {
                a
                for s in as_list(statements)
                for a in as_list(get_path(s, "Action")) or [get_path(s, "Action")]
            }
            - {None}
        )
    return found


# --- snapshots -----------------------------------------------------------------------------------

_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}")
_CONTENT_TAG = re.compile(r"(:[a-z0-9]+-)[0-9a-f]{16}\b")
REDACTED = "[secret]"


def _file_digest(path: str) -> str:
    """A shipped file's content, so a plan shows a function's code changing."""
    try:
        return hashlib.sha256((ROOT / path).read_bytes()).hexdigest()[:16]
    except OSError:
        return "<missing>"


def reviewable(value: Any, key: str = "") -> Any:
    """An input as the snapshot shows it: stable, readable and secret-free (JSON strings decoded,
    secrets and volatile ids masked)."""
    if isinstance(value, str):
        document = json_document(value)
        if document is not None:
            return reviewable(document, key)
        if key and looks_secret(key, value):
            return REDACTED
        value = value.replace(str(ROOT), "<repo>")
        value = _DIGEST.sub("@sha256:<digest>", value)
        # Image tags carry the app's content hash: an app edit is not an infrastructure change.
        return _CONTENT_TAG.sub(r"\1<content-hash>", value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, pulumi.FileAsset):
        return {"file": reviewable(str(value.path)), "sha256": _file_digest(value.path)}
    if isinstance(value, pulumi.AssetArchive):
        return {"archive": {k: reviewable(v) for k, v in sorted(value.assets.items())}}
    if isinstance(value, list):
        return [reviewable(v, key) for v in value]
    if isinstance(value, dict):
        # An environment entry {name, value}: judge the value by the variable's name.
        name, text = value.get("name"), value.get("value")
        if isinstance(name, str) and isinstance(text, str) and looks_secret(name, text):
            return {**value, "value": REDACTED}
        return {k: reviewable(v, k) for k, v in sorted(value.items())}
    return value


def _names(plan: Plan) -> dict[str, str]:
    return {r.urn: r.name for r in plan.resources}


def _path(plan: Plan, resource: Resource, by_urn: Mapping[str, Resource]) -> tuple[str, ...]:
    path = [resource.name]
    parent = by_urn.get(resource.parent)
    while parent is not None:
        path.append(parent.name)
        parent = by_urn.get(parent.parent)
    return tuple(reversed(path))


def ordered(plan: Plan) -> list[Resource]:
    """Resources in tree order (parents before children), deterministic."""
    by_urn = {r.urn: r for r in plan.resources}
    return sorted(plan.resources, key=lambda r: (_path(plan, r, by_urn), r.type))


def snapshot(plan: Plan) -> dict[str, Any]:
    """The reviewable record of a stack: every resource with all its inputs, secrets redacted.

    All inputs, not an allow-list: a snapshot exists so that any infrastructure change shows up
    in review, including keys nobody thought to list. JSON-string inputs are decoded so a diff
    points at the changed key; secret inputs and secret-looking values are masked; the repo path,
    image digests and content-hash tags (which move with every app edit) are normalised.
    """
    names = _names(plan)
    resources = []
    for resource in ordered(plan):
        entry: dict[str, Any] = {
            "type": resource.type,
            "name": resource.name,
            "parent": names.get(resource.parent),
            "inputs": {
                key: REDACTED if key in resource.secret_inputs else reviewable(value, key)
                for key, value in sorted(resource.inputs.items())
            },
        }
        if resource.protect:
            entry["protect"] = True
        if resource.ignore_changes:
            entry["ignoreChanges"] = sorted(resource.ignore_changes)
        depends = sorted(names.get(urn, urn) for urn in resource.depends_on)
        if depends:
            entry["dependsOn"] = depends
        resources.append(entry)
    estimate = estimate_cost(plan)
    return {
        "stack": plan.stack,
        "monthly_cost_usd": estimate.total,
        "resources": resources,
    }


# --- findings ------------------------------------------------------------------------------------


def findings(plan: Plan) -> list[dict[str, str]]:
    """The policy pack's checks on the plan: resource checks on inputs, stack checks on the
    resources with their outputs (what CrossGuard's stack policies see)."""
    found = []
    for resource in plan.resources:
        if resource.type.startswith(COMPONENT_PREFIXES):
            continue
        for policy, message in checks.check_resource(resource.type, resource.inputs):
            found.append(
                {
                    "policy": policy,
                    "resource": resource.name,
                    "type": resource.type,
                    "message": message,
                }
            )
    stack = [
        checks.StackResource(r.type, r.name, {**r.inputs, **r.outputs}) for r in plan.resources
    ]
    for policy, message in checks.check_stack(stack):
        found.append({"policy": policy, "resource": "", "type": "", "message": message})
    return found


def retained_on_destroy(plan: Plan) -> list[dict[str, str]]:
    """What `pulumi destroy` of the stack leaves behind, on purpose, and why.

    - `protect`: Pulumi refuses to delete the resource (and so the whole destroy) until the
      stack file turns it off;
    - EFS backups: AWS Backup keeps the automatic backups' recovery points in the
      `aws/efs/automatic-backup-vault` after the file system is deleted (EFS User Guide,
      "Automatic backups"), and they bill until they expire;
    - an ECR repository without `forceDelete` or an S3 bucket without `forceDestroy` is refused
      deletion while it holds images or objects;
    - load balancer deletion protection refuses the delete;
    - a KMS key is only scheduled for deletion, after its waiting period.
    """
    kept = []

    def keep(resource: Resource, why: str) -> None:
        kept.append({"resource": resource.name, "type": resource.type, "why": why})

    for resource in plan.resources:
        inputs = resource.inputs
        if resource.protect:
            keep(resource, "protect: Pulumi refuses to delete it (and fails the destroy)")
        if resource.type == "aws:efs/backupPolicy:BackupPolicy":
            if (inputs.get("backupPolicy") or {}).get("status") == "ENABLED":
                keep(resource, "its AWS Backup recovery points outlive the file system")
        elif resource.type == "aws:ecr/repository:Repository" and not inputs.get("forceDelete"):
            keep(resource, "ECR refuses to delete a repository that holds images")
        elif resource.type in ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"):
            if not inputs.get("forceDestroy"):
                keep(resource, "S3 refuses to delete a bucket that holds objects")
        elif resource.type in costs.LOAD_BALANCERS and inputs.get("enableDeletionProtection"):
            keep(resource, "deletion protection refuses the delete")
        elif resource.type == "aws:kms/key:Key":
            days = int(inputs.get("deletionWindowInDays", 30))
            keep(resource, f"scheduled for deletion only, {days} days later")
    return kept


# --- the report ----------------------------------------------------------------------------------


@dataclass
class Report:
    plan: Plan
    estimate: Estimate
    findings: list[dict[str, str]]
    retained: list[dict[str, str]] = field(default_factory=list)
    """What a `pulumi destroy` leaves behind on purpose (`retained_on_destroy`)."""

    def children(self) -> dict[str, list[Resource]]:
        """Parent URN -> its child resources, in tree order."""
        found: dict[str, list[Resource]] = defaultdict(list)
        for resource in ordered(self.plan):
            found[resource.parent].append(resource)
        return found

    def subtotal(self, resource: Resource, children: Mapping[str, list[Resource]]) -> float | None:
        """A resource's monthly cost with its children's (a component's is theirs); None if any
        part is unknown."""
        total = self.estimate.of(resource)
        for child in children.get(resource.urn, []):
            value = self.subtotal(child, children)
            total = None if total is None or value is None else total + value
        return total

    def resources(self) -> list[dict[str, Any]]:
        names = _names(self.plan)
        children = self.children()
        entries = []
        for r in ordered(self.plan):
            subtotal = self.subtotal(r, children)
            entries.append(
                {
                    "type": r.type,
                    "name": r.name,
                    "parent": names.get(r.parent),
                    "settings": settings_of(r),
                    "pricing": self.estimate.pricing.get(r.urn, "component"),
                    "monthly_usd": None if subtotal is None else round(subtotal, 2),
                }
            )
        return entries

    def as_json(self) -> dict[str, Any]:
        return {
            "stack": self.plan.stack,
            "resources": self.resources(),
            "monthly_cost_usd": self.estimate.total,
            "cost_lines": [line.as_json() for line in self.estimate.lines],
            "assumptions": {
                "prices": {
                    "value": f"{prices.REGION} list prices of {prices.PRICES_DATE}",
                    "note": "preflight/prices.py; on-demand, no free tier, no Savings Plans",
                },
                "hours_per_month": {
                    "value": prices.HOURS_PER_MONTH,
                    "note": "AWS's monthly convention",
                },
                "not_priced": {
                    "value": "data transfer (internet out, cross-AZ), API requests (KMS, "
                    "CloudWatch, ECR pulls), EFS IA access fees, load-driven scale-out, "
                    "Spot-interruption fallbacks, taxes",
                    "note": "small at this scale, or unknowable offline",
                },
                **self.estimate.assumptions,
            },
            "findings": self.findings,
            "retained_on_destroy": self.retained,
        }


class PlanError(Exception):
    """A bad stack name or a config error: one line for the user, no traceback."""


def parse_assumptions(items: Sequence[str]) -> dict[str, float]:
    """`key=value` pairs from `--assume`, checked against the assumptions the model knows."""
    parsed = {}
    for item in items:
        key, _, value = item.partition("=")
        if key not in prices.ASSUMPTIONS:
            known = ", ".join(sorted(prices.ASSUMPTIONS))
            raise PlanError(f"--assume {item}: no assumption {key!r} (known: {known})")
        try:
            parsed[key] = float(value)
        except ValueError:
            raise PlanError(f"--assume {item}: {value!r} is not a number") from None
    return parsed


def parse_sets(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """`section.key[.key...]=value` pairs from `--set`, as `run_stack` overrides.

    The value is read as YAML, as in a stack file: `3`, `true`, `[g5.xlarge, g6.xlarge]`,
    `gpu-ec2`. The program's own settings layer then judges it, like any stack file value.
    """
    overrides: dict[str, dict[str, Any]] = {}
    for item in items:
        path, sep, text = item.partition("=")
        keys = path.split(".")
        if not sep or len(keys) < 2 or not all(keys):
            raise PlanError(
                f"--set {item}: use SECTION.KEY=VALUE, e.g. inference.capacity=gpu-ec2 "
                "(nested: inference.gpu.min_instances=3)"
            )
        try:
            value = yaml.safe_load(text) if text else ""
        except yaml.YAMLError as error:
            raise PlanError(f"--set {item}: {text!r} is not a YAML value ({error})") from None
        node = overrides.setdefault(keys[0], {})
        for key in keys[1:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise PlanError(f"--set {item}: {key} is set to a value and a map at once")
        node[keys[-1]] = value
    return overrides


def build(
    stack: str,
    overrides: Mapping[str, float] | None = None,
    sets: Mapping[str, dict[str, Any]] | None = None,
) -> Report:
    if not STACK_NAME.fullmatch(stack):
        raise PlanError(f"{stack!r} is not a stack name (letters, digits, '-', '_', '.')")
    if not (ROOT / f"Pulumi.{stack}.yaml").exists():
        known = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml"))
        raise PlanError(
            f"no stack {stack!r}: there is no Pulumi.{stack}.yaml (stacks: {', '.join(known)})"
        )
    try:
        plan = run_stack(stack, dict(sets or {}))
    except pulumi.RunError as error:
        raise PlanError(f"stack {stack}: {error}") from None
    except Exception as error:
        # The program raised while declaring resources: a config problem the settings layer did
        # not catch, or a bug. Both are reported in one line; run the tests for the traceback.
        raise PlanError(f"stack {stack}: {type(error).__name__}: {error}") from None
    return Report(plan, estimate_cost(plan, overrides), findings(plan), retained_on_destroy(plan))


def render(report: Report) -> str:
    plan, estimate = report.plan, report.estimate
    out = [
        f"mlops {plan.stack}: {len(plan.resources)} resources "
        f"(offline plan; {prices.REGION} list prices of {prices.PRICES_DATE})",
        "",
    ]
    children = report.children()
    urns = {r.urn for r in plan.resources}
    roots = [r for r in ordered(plan) if r.parent not in urns]

    def walk(resource: Resource, prefix: str, last: bool, top: bool) -> None:
        branch = "" if top else ("└─ " if last else "├─ ")
        pricing = estimate.pricing.get(resource.urn)
        subtotal = report.subtotal(resource, children)
        cost = "" if pricing == "free" else f"  {_money(subtotal)}"
        out.append(f"{prefix}{branch}{resource.name}  [{short_type(resource.type)}]{cost}")
        inner = prefix + ("" if top else ("   " if last else "│  "))
        settings = settings_of(resource)
        if settings:
            text = " ".join(
                f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in settings.items()
            )
            out.append(f"{inner}{'│  ' if children[resource.urn] else '   '}{text[:160]}")
        kids = children[resource.urn]
        for index, child in enumerate(kids):
            walk(child, inner, index == len(kids) - 1, False)

    for root in roots:
        walk(root, "", True, True)
    out += ["", f"Monthly cost estimate (USD, {prices.REGION} list prices of {prices.PRICES_DATE})"]
    width = max((len(line.resource) for line in estimate.lines), default=10)
    for line in estimate.lines:
        if line.monthly_usd is None:
            out.append(f"  {line.resource:<{width}}  {line.item}: UNKNOWN ({line.note})")
            continue
        detail = f"{line.quantity:,.2f} {line.unit} x ${line.unit_usd:g}"
        note = f"  ({line.note})" if line.note else ""
        out.append(
            f"  {line.resource:<{width}}  {line.item}: {detail} = {_money(line.monthly_usd)}{note}"
        )
    unknown = estimate.unknown
    suffix = f" + {len(unknown)} unknown" if unknown else ""
    out += [
        "",
        f"  TOTAL {plan.stack}: {_money(estimate.total)} a month{suffix}",
        "",
        "Assumptions",
    ]
    for key, value in report.as_json()["assumptions"].items():
        out.append(f"  {key} = {value['value']}  ({value['note']})")
    out += ["", f"Policy findings ({len(report.findings)})"]
    for finding in report.findings:
        where = f"{finding['resource']} " if finding["resource"] else ""
        out.append(f"  [{finding['policy']}] {where}{finding['message']}")
    if not report.findings:
        out.append("  none: every policy in policy/ passes")
    out += ["", f"Retained on destroy ({len(report.retained)})"]
    for kept in report.retained:
        out.append(f"  {kept['resource']}  [{short_type(kept['type'])}]: {kept['why']}")
    if not report.retained:
        out.append("  nothing: `pulumi destroy` deletes every resource of the stack")
    return "\n".join(out)


def diff(old: Report, new: Report) -> dict[str, Any]:
    """What changes from one stack to another, resource by resource and in cost."""

    def index(report: Report) -> dict[tuple[str, str], dict[str, Any]]:
        return {(r["type"], r["name"]): r for r in report.resources()}

    before, after = index(old), index(new)
    changed = []
    for key in sorted(before.keys() & after.keys()):
        a, b = before[key], after[key]
        settings = {
            k: {"from": a["settings"].get(k), "to": b["settings"].get(k)}
            for k in sorted(a["settings"].keys() | b["settings"].keys())
            if a["settings"].get(k) != b["settings"].get(k)
        }
        if settings or a["monthly_usd"] != b["monthly_usd"]:
            changed.append(
                {
                    "type": key[0],
                    "name": key[1],
                    "settings": settings,
                    "monthly_usd": {"from": a["monthly_usd"], "to": b["monthly_usd"]},
                }
            )
    return {
        "from": old.plan.stack,
        "to": new.plan.stack,
        "added": [after[k] for k in sorted(after.keys() - before.keys())],
        "removed": [before[k] for k in sorted(before.keys() - after.keys())],
        "changed": changed,
        "monthly_cost_usd": {
            "from": old.estimate.total,
            "to": new.estimate.total,
            "change": round(new.estimate.total - old.estimate.total, 2),
        },
    }


def _priced(resource: Mapping[str, Any]) -> str:
    if resource["pricing"] in ("free", "component"):
        return ""
    return f"  {_money(resource['monthly_usd'])}"


def render_diff(change: Mapping[str, Any]) -> str:
    out = [f"{change['from']} -> {change['to']}", ""]
    for sign, key in (("+", "added"), ("-", "removed")):
        for resource in change[key]:
            out.append(
                f"{sign} {resource['name']}  [{short_type(resource['type'])}]{_priced(resource)}"
            )
    for resource in change["changed"]:
        cost = resource["monthly_usd"]
        moved = (
            f"  {_money(cost['from'])} -> {_money(cost['to'])}"
            if cost["from"] != cost["to"]
            else ""
        )
        out.append(f"~ {resource['name']}  [{short_type(resource['type'])}]{moved}")
        for key, values in resource["settings"].items():
            out.append(f"    {key}: {json.dumps(values['from'])} -> {json.dumps(values['to'])}")
    cost = change["monthly_cost_usd"]
    out += [
        "",
        f"Monthly cost: {change['from']} {_money(cost['from'])} -> {change['to']} "
        f"{_money(cost['to'])} ({'+' if cost['change'] >= 0 else '-'}"
        f"{_money(abs(cost['change']))})",
    ]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m preflight.plan",
        description="Offline plan of a stack: resource tree, monthly cost, policy findings.",
    )
    parser.add_argument("stack", help="stack name: Pulumi.<stack>.yaml")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--diff", metavar="OTHER", help="compare with another stack")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a stack config value for this plan only, e.g. inference.capacity=gpu-ec2 "
        "(repeatable; applies to --diff's stack too)",
    )
    parser.add_argument(
        "--assume",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="replace a usage assumption, e.g. train_hours_per_run=2 (repeatable)",
    )
    args = parser.parse_args(argv)
    try:
        overrides = parse_assumptions(args.assume)
        sets = parse_sets(args.sets)
        report = build(args.stack, overrides, sets)
        other = build(args.diff, overrides, sets) if args.diff else None
    except PlanError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if other is not None:
        change = diff(report, other)
        print(json.dumps(change, indent=2) if args.json else render_diff(change))
    elif args.json:
        print(json.dumps({**report.as_json(), "set": list(args.sets)}, indent=2))
    else:
        if args.sets:
            print(f"what-if over Pulumi.{args.stack}.yaml: --set {' --set '.join(args.sets)}\n")
        print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

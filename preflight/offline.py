"""Evaluate the Pulumi program in-process, offline, under mocks; record what it would send.

`run_stack("dev")` loads `Pulumi.dev.yaml`, applies overrides, evaluates `__main__.py` with
`pulumi.runtime.set_mocks` and returns a `Plan`: every resource with its type, logical name,
parent, inputs (wire names, as the provider receives them), options (protect, ignoreChanges,
dependsOn) and which inputs were secret, plus the stack exports resolved to plain values.

The mocks answer provider calls with realistic values (AZs, account, region, ECR token, SSM
parameters) and give each resource the outputs AWS would (ids, ARNs, URLs, digests), derived from
its inputs so tests can follow references between resources.
"""

from __future__ import annotations

import asyncio
import copy
import gc
import hashlib
import json
import runpy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "123456789012"
REGION = "us-east-1"
AZS = ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d"]
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
SSM_VALUES = {
    "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id": (
        "ami-0a1b2c3d4e5f60718"
    ),
}


@dataclass
class Resource:
    type: str
    name: str
    urn: str
    parent: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    protect: bool = False
    ignore_changes: list[str] = field(default_factory=list)
    depends_on: list[str] = field(default_factory=list)
    secret_inputs: set[str] = field(default_factory=set)
    """Top-level input names whose value (or part of it) is a secret."""
    id: str = ""
    """The physical id the mocks gave it (`sg-...`, `fs-...`), as other resources' inputs see it."""
    aliases: list[str] = field(default_factory=list)
    """The URNs it was known by before (`ResourceOptions.aliases`), expanded as the engine would."""


@dataclass
class Plan:
    stack: str
    resources: list[Resource]
    exports: dict[str, Any]
    calls: list[tuple[str, dict[str, Any]]]

    def of_type(self, type_: str) -> list[Resource]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name_contains: str = "") -> Resource:
        """The one resource of `type_` whose name contains `name_contains`, or, where several
        do, the one named exactly that (`inference-api`, not `inference-api-alt`)."""
        found = [r for r in self.of_type(type_) if name_contains in r.name]
        exact = [r for r in found if r.name == name_contains]
        if len(found) > 1 and len(exact) == 1:
            return exact[0]
        assert len(found) == 1, f"expected one {type_} ~{name_contains!r}, got {found!r}"
        return found[0]

    def by_urn(self, urn: str) -> Resource:
        return next(r for r in self.resources if r.urn == urn)

    def children_of(self, urn: str) -> list[Resource]:
        return [r for r in self.resources if r.parent == urn]


def _has_secret(value: Any) -> bool:
    if isinstance(value, dict):
        if value.get("4dabf18193072939515e22adb298388d") == SECRET_SIG:
            return True
        return any(_has_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_secret(v) for v in value)
    return False


def _digest(text: str, n: int = 17) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


@dataclass
class EcrState:
    """What the mock registry holds: repository name -> {tag: digest}. Shared by consecutive
    `run_stack` calls to play a sequence of deploys (rollback, unpin, revert) against one ECR.

    Like ECR with IMMUTABLE tags (ECR User Guide, "Image tag mutability"), pushing a tag that
    already names another digest fails with ImageTagAlreadyExistsException; like a real build,
    each build gives a new digest (builds are not reproducible), so rebuilding pushed content
    fails.
    """

    repositories: dict[str, dict[str, str]] = field(default_factory=dict)
    mutable: set[str] = field(default_factory=set)
    builds: int = 0

    def push(self, image_name: str) -> str:
        registry_path, _, tag = image_name.rpartition(":")
        repository = registry_path.split("/", 1)[1]
        self.builds += 1
        digest = "sha256:" + hashlib.sha256(f"{image_name}#{self.builds}".encode()).hexdigest()
        tags = self.repositories.setdefault(repository, {})
        if tag in tags and tags[tag] != digest and repository not in self.mutable:
            raise RuntimeError(
                f"ImageTagAlreadyExistsException: The image tag '{tag}' already exists in the "
                f"'{repository}' repository and cannot be overwritten because the repository is "
                "immutable."
            )
        tags[tag] = digest
        return digest


class RecordingMocks(pulumi.runtime.Mocks):
    """Answers calls and resources like AWS would, and remembers every call."""

    def __init__(self, ecr: EcrState | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.ecr = ecr if ecr is not None else EcrState()

    def call(self, args: pulumi.runtime.MockCallArgs):
        self.calls.append((args.token, dict(args.args)))
        token = args.token
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            return {"names": AZS, "zoneIds": [f"use1-az{i}" for i in range(1, 5)]}
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": ACCOUNT,
                "arn": f"arn:aws:iam::{ACCOUNT}:user/ci",
                "userId": "AIDAEXAMPLE",
                "id": ACCOUNT,
            }
        if token == "aws:index/getRegion:getRegion":
            return {"name": REGION, "region": REGION, "id": REGION}
        if token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}
        if token == "aws:ecr/getAuthorizationToken:getAuthorizationToken":
            return {
                "userName": "AWS",
                "password": "ecr-token-" + _digest("password", 32),
                "authorizationToken": "QVdTOmVjci10b2tlbg==",
                "proxyEndpoint": f"https://{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com",
                "expiresAt": "2026-11-23T00:00:00Z",
                "id": REGION,
            }
        if token == "aws:ssm/getParameter:getParameter":
            name = args.args["name"]
            if name not in SSM_VALUES:
                raise ValueError(f"ParameterNotFound: {name}")
            return {"name": name, "value": SSM_VALUES[name], "type": "String", "id": name}
        if token == "aws:ecr/getRepositories:getRepositories":
            return {"names": sorted(self.ecr.repositories), "id": REGION}
        if token == "aws:ecr/getImages:getImages":
            repository = args.args["repositoryName"]
            if repository not in self.ecr.repositories:
                raise ValueError(f"RepositoryNotFoundException: {repository}")
            tags = self.ecr.repositories[repository]
            return {
                "repositoryName": repository,
                "imageIds": [{"imageTag": t, "imageDigest": d} for t, d in sorted(tags.items())],
                "id": repository,
            }
        if token == "aws:route53/getZone:getZone":
            name = args.args["name"].rstrip(".")
            return {"name": name, "zoneId": "Z" + _digest(name, 12).upper(), "id": name}
        raise NotImplementedError(f"the mocks do not answer {token}")

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        inputs = copy.deepcopy(args.inputs)
        outputs = dict(inputs)
        name = args.name
        typ = args.typ
        service = typ.split(":")[1].split("/")[0] if ":" in typ else "x"
        kind = typ.rsplit(":", 1)[-1]
        rid = f"{name}-{_digest(typ + name, 8)}"
        arn = f"arn:aws:{service}:{REGION}:{ACCOUNT}:{kind.lower()}/{rid}"
        outputs.setdefault("arn", arn)
        outputs.setdefault("name", inputs.get("name", rid))

        if typ.startswith("awsx:"):
            outputs = {}  # remote components: their outputs are not their inputs
        if typ == "awsx:ec2:Vpc":
            azs = int(inputs.get("numberOfAvailabilityZones", 2))
            specs = [s["type"] for s in inputs.get("subnetSpecs", [])]
            outputs.update(
                vpcId=f"vpc-{_digest(name)}",
                publicSubnetIds=[f"subnet-pub{i}{_digest(name, 9)}" for i in range(azs)]
                if "Public" in specs
                else [],
                privateSubnetIds=[f"subnet-prv{i}{_digest(name, 9)}" for i in range(azs)]
                if "Private" in specs
                else [],
                isolatedSubnetIds=[],
            )
            rid = outputs["vpcId"]
        elif typ == "aws:ec2/securityGroup:SecurityGroup":
            rid = f"sg-{_digest(name)}"
        elif typ == "aws:efs/fileSystem:FileSystem":
            rid = f"fs-{_digest(name)}"
            outputs["dnsName"] = f"{rid}.efs.{REGION}.amazonaws.com"
            outputs["arn"] = f"arn:aws:elasticfilesystem:{REGION}:{ACCOUNT}:file-system/{rid}"
        elif typ == "aws:efs/accessPoint:AccessPoint":
            rid = f"fsap-{_digest(name)}"
            outputs["arn"] = f"arn:aws:elasticfilesystem:{REGION}:{ACCOUNT}:access-point/{rid}"
        elif typ == "aws:efs/mountTarget:MountTarget":
            rid = f"fsmt-{_digest(name)}"
        elif typ == "aws:ecr/repository:Repository":
            repo = inputs.get("name") or f"{name}-{_digest(name, 7)}"
            outputs.update(
                name=repo,
                repositoryUrl=f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{repo}",
                registryId=ACCOUNT,
                arn=f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{repo}",
            )
            rid = repo
            self.ecr.repositories.setdefault(repo, {})
            if inputs.get("imageTagMutability") == "MUTABLE":
                self.ecr.mutable.add(repo)
        elif typ == "docker:index/image:Image":
            image_name = inputs.get("imageName", "")
            repo = image_name.rsplit(":", 1)[0] if ":" in image_name.split("/")[-1] else image_name
            digest = self.ecr.push(image_name)
            outputs["repoDigest"] = f"{repo}@{digest}"
            outputs["baseImageName"] = image_name
            rid = outputs["repoDigest"]
        elif typ == "aws:acm/certificate:Certificate":
            rid = f"{_digest(name, 8)}-aaaa-4bbb-8ccc-{_digest(name + 'c', 12)}"
            outputs["arn"] = f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/{rid}"
            domain = inputs.get("domainName", "")
            outputs["domainValidationOptions"] = [
                {
                    "domainName": domain,
                    "resourceRecordName": f"_{_digest(domain, 32)}.{domain}.",
                    "resourceRecordType": "CNAME",
                    "resourceRecordValue": f"_{_digest(domain + 'v', 32)}.acm-validations.aws.",
                }
            ]
        elif typ == "aws:acm/certificateValidation:CertificateValidation":
            outputs["certificateArn"] = inputs.get("certificateArn")
        elif typ == "aws:route53/record:Record":
            outputs["fqdn"] = str(inputs.get("name", "")).rstrip(".")
        elif typ == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
            host = str(inputs.get("url", "")).removeprefix("https://")
            outputs["arn"] = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{host}"
        elif typ == "aws:kms/key:Key":
            rid = f"{_digest(name, 8)}-1234-4abc-9def-{_digest(name + 'k', 12)}"
            outputs["arn"] = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{rid}"
            outputs["keyId"] = rid
        elif typ == "aws:iam/role:Role":
            role = inputs.get("name") or rid
            outputs.update(name=role, arn=f"arn:aws:iam::{ACCOUNT}:role/{role}")
            rid = role
        elif typ == "aws:iam/instanceProfile:InstanceProfile":
            outputs["arn"] = f"arn:aws:iam::{ACCOUNT}:instance-profile/{rid}"
        elif typ == "aws:cloudwatch/logGroup:LogGroup":
            group = inputs.get("name") or f"/mlops/{rid}"
            outputs.update(name=group, arn=f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}")
            rid = group
        elif typ == "aws:ecs/cluster:Cluster":
            outputs["arn"] = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{rid}"
            outputs["name"] = inputs.get("name", rid)
        elif typ == "aws:ecs/taskDefinition:TaskDefinition":
            family = inputs.get("family", rid)
            outputs["arn"] = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{family}:1"
            outputs["arnWithoutRevision"] = (
                f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{family}"
            )
            outputs["revision"] = 1
        elif typ in ("aws:ecs/service:Service", "aws:ecs/capacityProvider:CapacityProvider"):
            outputs["name"] = inputs.get("name", rid)
        elif typ in ("aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer"):
            outputs.update(
                dnsName=f"{rid}-1234567890.{REGION}.elb.amazonaws.com",
                arn=f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:loadbalancer/app/{rid}/50dc6c495c0c9188",
                arnSuffix=f"app/{rid}/50dc6c495c0c9188",
                zoneId="Z35SXDOTRQ7X7K",
            )
        elif typ in ("aws:lb/targetGroup:TargetGroup", "aws:alb/targetGroup:TargetGroup"):
            outputs.update(
                arn=f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:targetgroup/{rid}/6d0ecf831eec9f09",
                arnSuffix=f"targetgroup/{rid}/6d0ecf831eec9f09",
            )
        elif typ == "aws:lb/listener:Listener":
            outputs["arn"] = (
                f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:listener/app/{rid}/"
                f"50dc6c495c0c9188/{_digest(name, 16)}"
            )
        elif typ == "aws:lb/listenerRule:ListenerRule":
            outputs["arn"] = (
                f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:listener-rule/app/{rid}/"
                f"50dc6c495c0c9188/{_digest(name, 16)}/{_digest(name + 'rule', 16)}"
            )
        elif typ == "aws:lambda/function:Function":
            function = inputs.get("name") or rid
            arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}"
            outputs.update(name=function, arn=arn)
        elif typ == "aws:sns/topic:Topic":
            outputs["arn"] = f"arn:aws:sns:{REGION}:{ACCOUNT}:{rid}"
        elif typ == "aws:sqs/queue:Queue":
            outputs["arn"] = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{rid}"
            outputs["url"] = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{rid}"
        elif typ == "aws:sfn/stateMachine:StateMachine":
            outputs["arn"] = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{rid}"
        elif typ == "aws:cloudwatch/eventRule:EventRule":
            outputs["arn"] = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{rid}"
        elif typ == "aws:s3/bucket:Bucket" or typ == "aws:s3/bucketV2:BucketV2":
            bucket = inputs.get("bucket") or rid
            outputs.update(bucket=bucket, arn=f"arn:aws:s3:::{bucket}")
            rid = bucket
        elif typ == "aws:wafv2/webAcl:WebAcl":
            outputs["arn"] = f"arn:aws:wafv2:{REGION}:{ACCOUNT}:regional/webacl/{rid}/a1b2c3"
        elif typ == "aws:ec2/launchTemplate:LaunchTemplate":
            rid = f"lt-{_digest(name)}"
            outputs["latestVersion"] = 1
        elif typ == "aws:autoscaling/group:Group":
            outputs["arn"] = (
                f"arn:aws:autoscaling:{REGION}:{ACCOUNT}:autoScalingGroup:"
                f"{_digest(name, 8)}-aaaa-bbbb-cccc-{_digest(name, 12)}:autoScalingGroupName/{rid}"
            )
            outputs["name"] = inputs.get("name", rid)
        elif typ == "aws:appautoscaling/target:Target":
            rid = f"{inputs.get('serviceNamespace')}/{inputs.get('resourceId')}"
        return rid, outputs


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The SDK's mock monitor, also keeping what `Mocks.new_resource` is not told: options."""

    def __init__(self, mocks: RecordingMocks):
        super().__init__(mocks)
        self.recorded: list[Resource] = []

    def RegisterResource(self, request):  # the gRPC method's name
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        raw = json_format.MessageToDict(request.object)
        registration = self.resources.get(response.urn)
        self.recorded.append(
            Resource(
                type=request.type,
                name=request.name,
                urn=response.urn,
                parent=request.parent,
                inputs=pulumi.runtime.rpc.deserialize_properties(request.object),
                outputs=dict(registration.state) if registration else {},
                protect=bool(request.protect),
                ignore_changes=list(request.ignoreChanges),
                depends_on=list(request.dependencies),
                secret_inputs={key for key, value in raw.items() if _has_secret(value)},
                id=response.id,
                aliases=_alias_urns(request, response.urn),
            )
        )
        return response


def _qualified_type(urn: str) -> str:
    """The `parent$child` type chain a URN carries (`urn:pulumi:stack::project::chain::name`)."""
    return urn.split("::")[2]


def _alias_urns(request, urn: str) -> list[str]:
    """A registration's aliases as full URNs: the engine's expansion of an alias spec (Pulumi's
    `Alias`: unset fields default to the resource's own; `parentUrn` names the old parent)."""
    stack, project = urn.split("::")[0].removeprefix("urn:pulumi:"), urn.split("::")[1]
    found = list(request.aliasURNs)
    for alias in request.aliases:
        if alias.urn:
            found.append(alias.urn)
            continue
        spec = alias.spec
        parent = "" if spec.noParent else (spec.parentUrn or request.parent)
        chain = spec.type or request.type
        if parent and _qualified_type(parent) != "pulumi:pulumi:Stack":
            chain = f"{_qualified_type(parent)}${chain}"
        found.append(
            f"urn:pulumi:{spec.stack or stack}::{spec.project or project}::{chain}::"
            f"{spec.name or request.name}"
        )
    return found


def stack_config(stack: str) -> dict[str, Any]:
    """The `config:` block of `Pulumi.<stack>.yaml`, as YAML values."""
    path = ROOT / f"Pulumi.{stack}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no stack file {path.name}")
    return yaml.safe_load(path.read_text())["config"]


def _resolve(value: Any) -> Any:
    if isinstance(value, pulumi.Output):
        return _sync_await(value.future())
    return value


def run_stack(
    stack: str,
    overrides: dict[str, dict[str, Any]] | None = None,
    ecr: EcrState | None = None,
) -> Plan:
    """Evaluate `__main__.py` for `stack` under mocks.

    `overrides` maps a section (`inference`) to keys merged over the stack file's values; a
    nested map (`{"gpu": {"min_instances": 3}}`) merges into the file's map, key by key.
    `ecr` is the registry the deploy sees and changes (default: a new, empty one).
    A config error raised by the program propagates as `pulumi.RunError`.
    """
    config = stack_config(stack)
    for section, values in (overrides or {}).items():
        key = section if ":" in section else f"mlops:{section}"
        config[key] = _merged(config.get(key) or {}, values)
    flat = {
        key: value if isinstance(value, str) else json.dumps(value) for key, value in config.items()
    }
    pulumi.runtime.set_all_config(flat)

    def program() -> None:
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")

    return run_program(program, stack, ecr)


def _merged(base: Any, extra: Any) -> Any:
    if not isinstance(base, dict) or not isinstance(extra, dict):
        return copy.deepcopy(extra)
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = _merged(base.get(key), value)
    return merged


def run_program(
    program: Callable[[], None], stack: str = "dev", ecr: EcrState | None = None
) -> Plan:
    """Evaluate `program` (any function declaring resources) under the recording mocks.

    For tests of one component outside `__main__.py`; the config set by the last `run_stack`
    stays in place.
    """
    mocks = RecordingMocks(ecr)
    monitor = RecordingMonitor(mocks)
    # asyncio.run() (the app's async tests use it) leaves the main thread without a current event
    # loop, and the SDK's mocks create their futures on the current one.
    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())
    pulumi_settings.set_root_resource(None)  # type: ignore[arg-type]
    pulumi.runtime.set_mocks(mocks, project="mlops", stack=stack, preview=False, monitor=monitor)
    root = pulumi_settings.get_root_resource()
    try:
        _sync_await(run_pulumi_func(program))
    except BaseException:
        _cancel_leftover_tasks()
        raise
    exports = {name: _resolve(value) for name, value in root.outputs.items()}
    return Plan(stack=stack, resources=monitor.recorded, exports=exports, calls=mocks.calls)


def _cancel_leftover_tasks() -> None:
    """A failed program leaves its other registrations and applies on the shared event loop and
    in the SDK's set of outstanding outputs (which `set_mocks` does not reset); the next
    evaluation in this process would await them and fail with the old error."""
    loop = asyncio.get_event_loop()
    leftovers = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in leftovers:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
    with pulumi_settings.SETTINGS.lock:
        pulumi_settings.SETTINGS.outputs.clear()
    # The program's output futures hold the error already raised to the caller. Mark it
    # retrieved, or asyncio reports each one again ("Future exception was never retrieved",
    # thousands of traceback lines) whenever they are garbage-collected, long after the test.
    for obj in gc.get_objects():
        if isinstance(obj, asyncio.Future) and obj.done() and not obj.cancelled():
            obj.exception()

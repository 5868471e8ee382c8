"""The policy checks, as pure functions shared by the CrossGuard pack and `preflight.plan`.

A resource check takes `(resource_type, props)` and returns violation messages (empty: compliant).
`props` are the engine's camelCase property maps, as CrossGuard hands them to a policy and as
`preflight.offline` records them; JSON documents (`containerDefinitions`, IAM `policy`) arrive
as JSON strings. A check ignores resource types it does not govern.

A stack check takes every resource of the stack (`StackResource`: type, name, props) and returns
messages; it covers rules that relate two resources (an ECR repository and its lifecycle policy, a
load balancer's listeners).

Props are read only through `Mapping` / `Sequence` (CrossGuard wraps them in proxies that raise on
values unknown during preview; the SDK reports such a policy as not run, and runs it at `up`).

Standard library only and self-contained: CrossGuard runs the pack from this directory alone
(`pulumi/policy/__main__.py` runs `runpy.run_path(<pack directory>)`, which puts the directory
first on `sys.path`; a published pack is this directory and nothing else), so the rules the
program shares with the pack (what looks like a secret, the Docker labels it reads, the log
retention values) live here and the program imports them from here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

NFS_PORT = 2049

# CloudWatch Logs PutRetentionPolicy `retentionInDays` values (CloudWatch Logs API Reference).
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545,
    731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip

# --- what looks like a secret ----------------------------------------------------------------

_SECRET_NAME = re.compile(r"(SECRET|PASSWORD|PASSWD|TOKEN|API_?KEY|ACCESS_?KEY|CREDENTIAL|PRIVATE)")
_SECRET_VALUE = re.compile(
    # An AWS access key id anywhere in the value ("AKIA" long-term, "ASIA" temporary; IAM User
    # Guide, "Unique identifiers": 20 characters), not only a value that is nothing else.
    r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
    # A URL that carries a password in its user information (RFC 3986 `user:password@host`).
    r"|[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@]+:[^\s/@]+@"
)


def secret_value(value: str) -> str | None:
    """Why a value looks like a credential (an AWS access key id, a private key, a URL with a
    password), or None. Never echoes the value."""
    match = _SECRET_VALUE.search(value)
    if match is None:
        return None
    found = match.group(0)
    if found.startswith(("AKIA", "ASIA")):
        return "it holds an AWS access key id"
    if found.startswith("-----BEGIN"):
        return "it holds a private key"
    return "it holds a URL with a password"


def looks_secret(name: str, value: str) -> bool:
    """True for an environment variable that looks like a credential: by its name, by its
    value, or (a JSON object, such as the staged hyperparameters) by any value inside it."""
    return bool(_SECRET_NAME.search(name.upper()) or secret_value(value))


# Docker labels the program sets on containers (components/documents/common.py) and reads here.
LABEL_ROOT_OPT_OUT = "mlops.security.run-as-root"
"""On a workload container run as root with a writable root (`workload.security.run_as_root`):
the documented opt-out, which the pack reports as advisory instead of refusing."""
LABEL_STAGING = "mlops.platform.staging"
"""On the platform's staging containers: root (they give staged files to the workload's uid) on
a read-only root file system."""
LABEL_HEALTH = "mlops.health-check"
"""`load-balancer` on a server with no container health check: its target group checks it."""
LABEL_PROMOTION = "mlops.promotion"
"""`every-trained-run` on the platform gate of a workload that chose to promote every run that
trained, with no objective compared (`workload.promotion`): reported as advisory."""

SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SECURITY_GROUP_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EFS_FILE_SYSTEM = "aws:efs/fileSystem:FileSystem"
EFS_ACCESS_POINT = "aws:efs/accessPoint:AccessPoint"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
ECS_SERVICE = "aws:ecs/service:Service"
ECR_REPOSITORY = "aws:ecr/repository:Repository"
ECR_LIFECYCLE_POLICY = "aws:ecr/lifecyclePolicy:LifecyclePolicy"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
EC2_INSTANCE = "aws:ec2/instance:Instance"
LISTENER_TYPES = ("aws:lb/listener:Listener", "aws:alb/listener:Listener")
LISTENER_CERTIFICATE_TYPES = (
    "aws:lb/listenerCertificate:ListenerCertificate",
    "aws:alb/listenerCertificate:ListenerCertificate",
)
POLICY_ATTACHMENT_TYPES = (
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
    "aws:iam/userPolicyAttachment:UserPolicyAttachment",
    "aws:iam/groupPolicyAttachment:GroupPolicyAttachment",
    "aws:iam/policyAttachment:PolicyAttachment",
)
IAM_ROLE = "aws:iam/role:Role"
# Resources whose `policy` input is a JSON policy document: identity policies and the resource
# policies this program may write. An `Allow` of every action is wrong in all of them.
POLICY_DOCUMENT_TYPES = (
    "aws:iam/policy:Policy",
    "aws:iam/rolePolicy:RolePolicy",
    "aws:iam/userPolicy:UserPolicy",
    "aws:iam/groupPolicy:GroupPolicy",
    "aws:efs/fileSystemPolicy:FileSystemPolicy",
    "aws:ecr/repositoryPolicy:RepositoryPolicy",
    "aws:sns/topicPolicy:TopicPolicy",
    "aws:s3/bucketPolicy:BucketPolicy",
)

# AWS managed policies too broad for any workload role: every `*FullAccess`, plus the admins.
_BROAD_MANAGED_POLICY = re.compile(
    r":policy/(?:.+/)?(AdministratorAccess|PowerUserAccess|[\w+=,.@-]*FullAccess[\w+=,.@-]*)$"
)


# --- plumbing ----------------------------------------------------------------------------------


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _seq(value: Any) -> list[Any]:
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return list(value)
    return []


def _document(value: Any) -> Any:
    """A JSON document input: the provider takes a string; tolerate an already-decoded value."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def containers(props: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The container definitions of a task definition's props (a JSON string on the wire)."""
    return [c for c in _seq(_document(props.get("containerDefinitions"))) if isinstance(c, Mapping)]


def _container_name(container: Mapping[str, Any], index: int) -> str:
    return str(container.get("name") or f"#{index}")


# --- storage and registry ----------------------------------------------------------------------


def _opens_nfs(protocol: Any, from_port: Any, to_port: Any) -> bool:
    proto = str(protocol).lower() if protocol is not None else ""
    if proto in ("-1", "all"):
        return True
    if proto not in ("tcp", "6", "udp", "17"):
        return False
    low, high = _number(from_port), _number(to_port)
    if low is None or high is None:
        return False
    return low <= NFS_PORT <= high


def nfs_not_open_to_cidr(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """NFS (2049) is reachable only from security groups, never from an address range."""
    found: list[str] = []
    if resource_type == SECURITY_GROUP:
        for rule in _seq(props.get("ingress")):
            rule = _map(rule)
            cidrs = [*_seq(rule.get("cidrBlocks")), *_seq(rule.get("ipv6CidrBlocks"))]
            cidrs += _seq(rule.get("prefixListIds"))
            if cidrs and _opens_nfs(rule.get("protocol"), rule.get("fromPort"), rule.get("toPort")):
                found.append(f"ingress opens NFS ({NFS_PORT}) to {', '.join(map(str, cidrs))}")
    elif resource_type == SECURITY_GROUP_RULE:
        cidrs = [*_seq(props.get("cidrBlocks")), *_seq(props.get("ipv6CidrBlocks"))]
        cidrs += _seq(props.get("prefixListIds"))
        if (
            props.get("type") == "ingress"
            and cidrs
            and _opens_nfs(props.get("protocol"), props.get("fromPort"), props.get("toPort"))
        ):
            found.append(f"ingress rule opens NFS ({NFS_PORT}) to {', '.join(map(str, cidrs))}")
    elif resource_type == INGRESS_RULE:
        sources = [props.get(k) for k in ("cidrIpv4", "cidrIpv6", "prefixListId") if props.get(k)]
        if sources and _opens_nfs(
            props.get("ipProtocol"), props.get("fromPort"), props.get("toPort")
        ):
            found.append(f"ingress rule opens NFS ({NFS_PORT}) to {', '.join(map(str, sources))}")
    if found:
        found.append("allow NFS only from the clients' security groups")
        return ["; ".join(found)]
    return []


def efs_encrypted(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """EFS file systems are encrypted at rest."""
    if resource_type == EFS_FILE_SYSTEM and props.get("encrypted") is not True:
        return ["the EFS file system is not encrypted at rest: set encrypted: true"]
    return []


def efs_access_point_enforces_identity(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """EFS access points force a non-root POSIX user and a root directory below `/`."""
    if resource_type != EFS_ACCESS_POINT:
        return []
    found = []
    user = _map(props.get("posixUser"))
    uid, gid = _number(user.get("uid")), _number(user.get("gid"))
    if uid is None or gid is None:
        found.append("the access point does not enforce a POSIX user (posixUser.uid and .gid)")
    elif uid == 0:
        found.append("the access point enforces uid 0 (root): use the app's user")
    path = _map(props.get("rootDirectory")).get("path")
    if not path or path == "/":
        found.append("the access point exposes the file system root: set rootDirectory.path")
    return found


def ecs_efs_volumes_encrypted(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """EFS volumes of task definitions use TLS in transit and IAM authorization."""
    if resource_type != TASK_DEFINITION:
        return []
    found = []
    for volume in _seq(props.get("volumes")):
        volume = _map(volume)
        efs = volume.get("efsVolumeConfiguration")
        if efs is None:
            continue
        efs = _map(efs)
        name = volume.get("name", "?")
        if efs.get("transitEncryption") != "ENABLED":
            found.append(f"EFS volume {name}: transitEncryption must be ENABLED")
        if _map(efs.get("authorizationConfig")).get("iam") != "ENABLED":
            found.append(f"EFS volume {name}: authorizationConfig.iam must be ENABLED")
    return found


BUILD_CACHE_SUFFIX = "-build-cache"


def ecr_repository_hardened(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """ECR repositories have immutable tags, scan on push and KMS encryption.

    The one exception is a build-cache repository (its name ends in `-build-cache`): its cache
    tags move to every build by design, and nothing deploys from it. Exclusion filters
    (IMMUTABLE_WITH_EXCLUSION) let some tags of a release repository move, so they are refused.
    """
    if resource_type != ECR_REPOSITORY:
        return []
    found = []
    mutability = props.get("imageTagMutability")
    name = props.get("name")
    build_cache = isinstance(name, str) and name.endswith(BUILD_CACHE_SUFFIX)
    if mutability != "IMMUTABLE" and not (build_cache and mutability == "MUTABLE"):
        found.append(
            f"image tags are {mutability or 'MUTABLE'}: set imageTagMutability IMMUTABLE "
            f"(only a repository named *{BUILD_CACHE_SUFFIX} may be MUTABLE)"
        )
    if _map(props.get("imageScanningConfiguration")).get("scanOnPush") is not True:
        found.append("images are not scanned on push: set imageScanningConfiguration.scanOnPush")
    encryption = [_map(e) for e in _seq(props.get("encryptionConfigurations"))]
    if not any(e.get("encryptionType") == "KMS" for e in encryption):
        found.append("the repository is not encrypted with KMS: set encryptionConfigurations KMS")
    return found


# --- logs --------------------------------------------------------------------------------------


def log_group_retention(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Every log group expires its events (CloudWatch keeps them forever by default)."""
    if resource_type != LOG_GROUP:
        return []
    days = _number(props.get("retentionInDays"))
    if days is None or days == 0:
        return ["the log group keeps events forever: set retentionInDays"]
    if int(days) not in LOG_RETENTION_DAYS:
        return [f"retentionInDays {int(days)} is not a CloudWatch Logs retention value"]
    return []


# --- containers --------------------------------------------------------------------------------


def _each_container(
    resource_type: str,
    props: Mapping[str, Any],
    problem: Callable[[Mapping[str, Any]], str | None],
) -> list[str]:
    if resource_type != TASK_DEFINITION:
        return []
    found = []
    for index, container in enumerate(containers(props)):
        message = problem(container)
        if message:
            found.append(f"container {_container_name(container, index)}: {message}")
    return found


def container_log_configuration(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Every container ships its logs (a log driver is configured)."""
    return _each_container(
        resource_type,
        props,
        lambda c: (
            None
            if _map(c.get("logConfiguration")).get("logDriver")
            else "no logConfiguration.logDriver: its output would be lost"
        ),
    )




def _label(container: Mapping[str, Any], name: str) -> str:
    return str(_map(container.get("dockerLabels")).get(name, ""))


def container_health_check(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Containers that listen on a port have a container health check (or, labelled
    `mlops.health-check: load-balancer`, their target group's: the image may have no python or
    curl to run one)."""
    return _each_container(
        resource_type,
        props,
        lambda c: (
            "has portMappings but no healthCheck.command"
            if _seq(c.get("portMappings"))
            and not _seq(_map(c.get("healthCheck")).get("command"))
            and _label(c, LABEL_HEALTH) != "load-balancer"
            else None
        ),
    )


def container_read_only_root(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Containers run with a read-only root filesystem."""
    return _each_container(
        resource_type,
        props,
        lambda c: (
            None
            if c.get("readonlyRootFilesystem") is True or _label(c, LABEL_ROOT_OPT_OUT) == "true"
            else "readonlyRootFilesystem is not true"
        ),
    )


def _runs_as_root(container: Mapping[str, Any]) -> str | None:
    user = container.get("user")
    if not user:
        return "no user: the image's default (often root) would run it"
    if str(user).split(":")[0] in ("0", "root"):
        return f"user {user!r} is root"
    return None


def container_non_root(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Containers run as a non-root user (but for the workload's documented opt-out, reported
    by `workload-runs-as-root`, and the platform's staging containers on a read-only root)."""

    def problem(c: Mapping[str, Any]) -> str | None:
        if _label(c, LABEL_ROOT_OPT_OUT) == "true":
            return None
        if _label(c, LABEL_STAGING) == "true" and c.get("readonlyRootFilesystem") is True:
            return None
        return _runs_as_root(c)

    return _each_container(resource_type, props, problem)


def workload_runs_as_root(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """The workload opted out of non-root and read-only root (`workload.security.run_as_root`):
    advisory, the image needs it (AWS's own SageMaker samples run nginx and gunicorn as root)."""
    return _each_container(
        resource_type,
        props,
        lambda c: (
            "runs as root with a writable root file system (workload.security.run_as_root)"
            if _label(c, LABEL_ROOT_OPT_OUT) == "true"
            else None
        ),
    )


def promotion_without_objective(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """The workload chose to promote every run that trained, with no objective compared
    (`workload.promotion: every-trained-run`): advisory, an image that writes no metrics (AWS's
    scikit BYOC sample) has nothing to compare, as SageMaker deploys any trained model."""
    return _each_container(
        resource_type,
        props,
        lambda c: (
            "promotes every run that trained, comparing no objective (workload.promotion: "
            "every-trained-run)"
            if _label(c, LABEL_PROMOTION) == "every-trained-run"
            else None
        ),
    )


def container_not_privileged(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """No container runs privileged (root on the host)."""
    return _each_container(
        resource_type,
        props,
        lambda c: (
            "privileged: true gives it root on the host"
            if c.get("privileged") in (True, "true", "True")
            else None
        ),
    )


def container_env_no_secrets(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """No AWS keys or secret-looking values in container `environment` (use `secrets`)."""

    def problem(container: Mapping[str, Any]) -> str | None:
        names = [
            str(_map(item).get("name", ""))
            for item in _seq(container.get("environment"))
            if looks_secret(str(_map(item).get("name", "")), str(_map(item).get("value", "")))
        ]
        if names:
            # Name the variables, never echo their values.
            return (
                f"environment {', '.join(names)} looks like a secret: "
                "pass it through `secrets` (Secrets Manager / SSM) instead"
            )
        return None

    return _each_container(resource_type, props, problem)


# --- IAM ---------------------------------------------------------------------------------------


def iam_no_broad_managed_policies(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """No `*FullAccess`, AdministratorAccess or PowerUserAccess managed policy is attached."""
    arns: list[Any] = []
    if resource_type in POLICY_ATTACHMENT_TYPES:
        arns = [props.get("policyArn")]
    elif resource_type == IAM_ROLE:
        arns = _seq(props.get("managedPolicyArns"))
    broad = [str(a) for a in arns if isinstance(a, str) and _BROAD_MANAGED_POLICY.search(a)]
    if broad:
        return [f"attaches {', '.join(broad)}: grant the named actions on named resources instead"]
    return []


def _allows_every_action(document: Any) -> list[str]:
    statements = _map(document).get("Statement")
    if isinstance(statements, Mapping):
        statements = [statements]
    found = []
    for index, statement in enumerate(_seq(statements)):
        statement = _map(statement)
        if statement.get("Effect") != "Allow":
            continue
        actions = statement.get("Action")
        actions = [actions] if isinstance(actions, str) else _seq(actions)
        if any(a in ("*", "*:*") for a in actions):
            found.append(f"statement {statement.get('Sid') or index} allows Action '*'")
    return found


def iam_no_wildcard_action(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """No policy document allows `Action: "*"`."""
    documents: list[Any] = []
    if resource_type in POLICY_DOCUMENT_TYPES:
        documents = [props.get("policy")]
    elif resource_type == IAM_ROLE:
        documents = [_map(p).get("policy") for p in _seq(props.get("inlinePolicies"))]
    found = []
    for document in documents:
        found += _allows_every_action(_document(document))
    if found:
        return ["; ".join(found) + ": list the actions the workload needs"]
    return []


_MANAGED_POLICY_ARN = re.compile(r"arn:aws[a-z-]*:iam::(\d{12}|aws):policy/[\w+=,.@/-]+")


def iam_role_permissions_boundary(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Every role carries a permissions boundary (components/permissions_boundary.py): without
    one, whoever can edit the role's policies can grant it anything."""
    if resource_type != IAM_ROLE:
        return []
    boundary = props.get("permissionsBoundary")
    if not boundary:
        return ["has no permissionsBoundary: every role of the stack carries the stack's boundary"]
    if not _MANAGED_POLICY_ARN.fullmatch(str(boundary)):
        return [f"permissionsBoundary {boundary!r} is not a managed policy ARN"]
    return []


# --- compute and traffic -----------------------------------------------------------------------


def gpu_only_on_ec2(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """GPU resource requirements only on EC2-compatible task definitions (Fargate has no GPUs)."""
    if resource_type != TASK_DEFINITION:
        return []
    gpu_containers = [
        _container_name(c, i)
        for i, c in enumerate(containers(props))
        if any(_map(r).get("type") == "GPU" for r in _seq(c.get("resourceRequirements")))
    ]
    if not gpu_containers:
        return []
    compatibilities = [str(c) for c in _seq(props.get("requiresCompatibilities"))]
    if "EC2" not in compatibilities or "FARGATE" in compatibilities:
        return [
            f"container {', '.join(gpu_containers)} requests a GPU but the task definition "
            f"requires {compatibilities or 'the default'}: set requiresCompatibilities [EC2]"
        ]
    return []


def ecs_service_circuit_breaker(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """ECS services roll back a failing deployment: a rolling update with the deployment
    circuit breaker and rollback on; a blue-green, canary or linear one (which the circuit
    breaker does not judge: ECS API Reference, "DeploymentCircuitBreaker") with deployment
    alarms that roll back."""
    if resource_type != ECS_SERVICE:
        return []
    controller = _map(props.get("deploymentController")).get("type", "ECS")
    if controller not in (None, "ECS"):
        return []  # the circuit breaker exists only for the rolling-update (ECS) controller
    strategy = _map(props.get("deploymentConfiguration")).get("strategy") or "ROLLING"
    if strategy != "ROLLING":
        alarms = _map(props.get("alarms"))
        if alarms.get("enable") is not True or alarms.get("rollback") is not True or not (
            alarms.get("alarmNames")
        ):
            return [f"a {strategy} deployment needs alarms {{enable: true, rollback: true}}"]
        return []
    breaker = _map(props.get("deploymentCircuitBreaker"))
    if breaker.get("enable") is not True or breaker.get("rollback") is not True:
        return ["set deploymentCircuitBreaker {enable: true, rollback: true}"]
    return []


def imdsv2_required(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Launch templates and instances require IMDSv2 (session tokens)."""
    if resource_type not in (LAUNCH_TEMPLATE, EC2_INSTANCE):
        return []
    options = _map(props.get("metadataOptions"))
    if options.get("httpEndpoint") == "disabled" or options.get("httpTokens") == "required":
        return []
    return ["the instance metadata service accepts IMDSv1: set metadataOptions.httpTokens required"]


# --- stack checks ------------------------------------------------------------------------------


class StackResource(NamedTuple):
    type: str
    name: str
    props: Mapping[str, Any]


def ecr_lifecycle_policies(resources: Sequence[StackResource]) -> list[str]:
    """Every ECR repository has a lifecycle policy (untagged and old images expire)."""
    repositories = [r for r in resources if r.type == ECR_REPOSITORY]
    covered: set[str] = set()
    unresolved = 0
    for policy in (r for r in resources if r.type == ECR_LIFECYCLE_POLICY):
        repository = policy.props.get("repository")
        if isinstance(repository, str) and repository:
            covered.add(repository)
        else:
            unresolved += 1  # not known yet: give it to one repository rather than guess
    missing = [r.name for r in repositories if r.props.get("name") not in covered]
    if len(missing) > unresolved:
        return [f"ECR repository {name} has no lifecycle policy" for name in missing]
    return []


def _redirects_to_https(listener: Mapping[str, Any]) -> bool:
    actions = [_map(a) for a in _seq(listener.get("defaultActions"))]
    return bool(actions) and all(
        a.get("type") == "redirect" and _map(a.get("redirect")).get("protocol") == "HTTPS"
        for a in actions
    )


def https_when_certificate(resources: Sequence[StackResource]) -> list[str]:
    """Where a load balancer has a certificate, it serves HTTPS and plain HTTP only redirects."""
    listeners = [r for r in resources if r.type in LISTENER_TYPES]
    found = []
    with_certificate: set[str] = set()
    for listener in listeners:
        if listener.props.get("certificateArn"):
            protocol = listener.props.get("protocol")
            if protocol not in ("HTTPS", "TLS"):
                found.append(
                    f"listener {listener.name} has a certificate but serves {protocol}: use HTTPS"
                )
            with_certificate.add(str(listener.props.get("loadBalancerArn")))
    for extra in (r for r in resources if r.type in LISTENER_CERTIFICATE_TYPES):
        arn = str(extra.props.get("listenerArn"))
        with_certificate |= {
            str(lst.props.get("loadBalancerArn"))
            for lst in listeners
            if str(lst.props.get("arn")) == arn
        }
    for listener in listeners:
        if (
            str(listener.props.get("loadBalancerArn")) in with_certificate
            and listener.props.get("protocol") == "HTTP"
            and not _redirects_to_https(listener.props)
        ):
            found.append(
                f"listener {listener.name} serves plain HTTP next to an HTTPS listener: "
                "make its default action a redirect to HTTPS"
            )
    return found


# --- the registry ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    name: str
    """The policy's name in the pack (kebab-case, stable: CrossGuard config refers to it)."""
    validate: Callable[[str, Mapping[str, Any]], list[str]]
    advisory: bool = False
    """Reported, never blocking (CrossGuard ADVISORY)."""

    @property
    def description(self) -> str:
        return (self.validate.__doc__ or self.name).strip().splitlines()[0]


@dataclass(frozen=True)
class StackCheck:
    name: str
    validate: Callable[[Sequence[StackResource]], list[str]]

    @property
    def description(self) -> str:
        return (self.validate.__doc__ or self.name).strip().splitlines()[0]


RESOURCE_CHECKS: tuple[Check, ...] = (
    Check("nfs-not-open-to-cidr", nfs_not_open_to_cidr),
    Check("efs-encrypted", efs_encrypted),
    Check("efs-access-point-enforces-identity", efs_access_point_enforces_identity),
    Check("ecs-efs-volumes-encrypted", ecs_efs_volumes_encrypted),
    Check("ecr-repository-hardened", ecr_repository_hardened),
    Check("log-group-retention", log_group_retention),
    Check("container-log-configuration", container_log_configuration),
    Check("container-health-check", container_health_check),
    Check("container-read-only-root", container_read_only_root),
    Check("container-non-root", container_non_root),
    Check("workload-runs-as-root", workload_runs_as_root, advisory=True),
    Check("promotion-without-objective", promotion_without_objective, advisory=True),
    Check("container-not-privileged", container_not_privileged),
    Check("container-env-no-secrets", container_env_no_secrets),
    Check("iam-no-broad-managed-policies", iam_no_broad_managed_policies),
    Check("iam-no-wildcard-action", iam_no_wildcard_action),
    Check("iam-role-permissions-boundary", iam_role_permissions_boundary),
    Check("gpu-only-on-ec2", gpu_only_on_ec2),
    Check("ecs-service-circuit-breaker", ecs_service_circuit_breaker),
    Check("imdsv2-required", imdsv2_required),
)

STACK_CHECKS: tuple[StackCheck, ...] = (
    StackCheck("ecr-lifecycle-policy", ecr_lifecycle_policies),
    StackCheck("https-when-certificate", https_when_certificate),
)


def check_resource(resource_type: str, props: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every resource check on one resource: `(policy name, message)` pairs."""
    return [
        (check.name, message)
        for check in RESOURCE_CHECKS
        for message in check.validate(resource_type, props)
    ]


def check_stack(resources: Sequence[StackResource]) -> list[tuple[str, str]]:
    """Every stack check: `(policy name, message)` pairs."""
    return [
        (check.name, message) for check in STACK_CHECKS for message in check.validate(resources)
    ]

"""ImageRepo: the ECR repository and the container image, deployed by digest.

Creates:
- an ECR repository: scan on push, KMS encryption (AWS-managed key), immutable release tags,
  deletable with its images only where the stack does not protect its data (`store.protect`);
- its lifecycle policy (components/documents.py `ecr_lifecycle_policy`): untagged images expire
  after a day, each flavour keeps its newest `image.keep_images` release tags;
- per flavour, a `docker.Image` built from `app/` for linux/amd64 and pushed with a short-lived
  ECR token (kept secret), tagged `<flavour>-<content hash>`: an unchanged build context gives
  the same image name, so `pulumi up` shows no diff and builds nothing;
- per flavour, a second `docker.Image` that moves the `cache-<flavour>` tag to the new build
  (a full local cache hit, only a manifest to push), so the next build starts from the previous
  image's layers (`cacheFrom` + BuildKit inline cache metadata).

Flavours: `cpu` always; `gpu` (CUDA base, CUDA-enabled XGBoost) only when training or serving
runs on GPU EC2. `image.pin: sha256:...` (with `image.gpu_pin` on a gpu-ec2 stack) builds
nothing and deploys those already-pushed digests (rollback).
Consumers use `image_ref(flavour)`, a `repo@sha256:...` reference, never a mutable tag.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_docker as docker

from components.documents import IMAGE_FLAVOURS, ecr_lifecycle_policy
from components.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
APP_DIR = PROJECT_ROOT / "app"
PLATFORM = "linux/amd64"
"""ECS GPU AMIs and Fargate tasks here are x86_64 (settings.GPU_INSTANCES excludes Graviton)."""
CACHE_TAG_PATTERN = "cache-*"
"""The only mutable tags: one per flavour, always on the newest build, used as build cache."""
# Files Docker always sends with the context, even when .dockerignore lists them.
_BUILD_FILES = ("Dockerfile", ".dockerignore")
_DIGEST_REF = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")


# ------------------------------------------------------------------------ build context hash


def _ignore_rules(context: Path) -> list[tuple[re.Pattern[str], bool]]:
    """`.dockerignore` as (regex, excludes) pairs, in file order (the last match wins).

    Docker's rules (docs "Dockerfile reference: .dockerignore file"): `#` comments, patterns
    relative to the context root with a leading `/` ignored, Go `filepath.Match` wildcards plus
    `**` for any number of directories, `!` re-includes, and a pattern that matches a directory
    matches everything below it.
    """
    path = context / ".dockerignore"
    if not path.exists():
        return []
    rules = []
    for line in path.read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        excludes = not pattern.startswith("!")
        pattern = os.path.normpath(pattern.lstrip("!").strip()).lstrip("/")
        rules.append((re.compile(_pattern_regex(pattern)), excludes))
    return rules


def _pattern_regex(pattern: str) -> str:
    """Go `filepath.Match` syntax (`*` and `?` stop at `/`, `[...]`, `\\` escapes) plus `**`."""
    regex, i = "", 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
            continue
        if pattern.startswith("**", i):
            regex, i = regex + ".*", i + 2
            continue
        if char == "*":
            regex += "[^/]*"
        elif char == "?":
            regex += "[^/]"
        elif char == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            body = pattern[i + 1 : end]
            if body[:1] in ("!", "^"):
                body = "^" + body[1:]
            regex, i = regex + f"[{body}]", end + 1
            continue
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            regex += re.escape(pattern[i])
        else:
            regex += re.escape(char)
        i += 1
    return regex


def _excluded(relative: str, rules: list[tuple[re.Pattern[str], bool]]) -> bool:
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for regex, excludes in rules:
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = excludes
    return excluded


def context_files(context: Path) -> Iterator[tuple[str, Path]]:
    """The files Docker sends as the build context: (posix relative path, path), sorted."""
    rules = _ignore_rules(context)
    can_prune = all(excludes for _, excludes in rules)  # no `!` rule can re-include below
    for directory, subdirs, files in os.walk(context):
        base = Path(directory).relative_to(context)
        if can_prune:
            subdirs[:] = [d for d in subdirs if not _excluded((base / d).as_posix(), rules)]
        subdirs.sort()
        for name in sorted(files):
            relative = (base / name).as_posix()
            if (name in _BUILD_FILES and base == Path(".")) or not _excluded(relative, rules):
                yield relative, Path(directory) / name


def context_tag(context: Path, flavour: str) -> str:
    """`<flavour>-<16 hex>`: a hash of every context file's path and bytes, the flavour and the
    platform. The same context gives the same tag on any machine; any change gives a new one.
    """
    digest = hashlib.sha256(f"{flavour}\0{PLATFORM}\0".encode())
    for relative, path in context_files(context):
        data = path.read_bytes()
        digest.update(f"{relative}\0{len(data)}\0".encode())
        digest.update(data)
    return f"{flavour}-{digest.hexdigest()[:16]}"


# ------------------------------------------------------------------------------- component


@dataclass
class ImageRepoArgs:
    settings: Settings
    """The whole stack config: `image` (keep_images, pin, gpu_pin), `training.capacity` and
    `inference.capacity` (the gpu flavour), `store.protect` (whether the repository may be
    deleted with its images)."""
    context: Path = APP_DIR
    """The Docker build context; its `Dockerfile` builds both flavours (`--build-arg FLAVOUR`)."""


class ImageRepo(pulumi.ComponentResource):
    repository_url: pulumi.Output[str]
    repository_name: pulumi.Output[str]
    repository_arn: pulumi.Output[str]

    def __init__(self, name: str, args: ImageRepoArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:index:ImageRepo", name, None, opts)
        settings = args.settings
        self._capacities = (
            f"training.capacity {settings.training.capacity.value}, "
            f"inference.capacity {settings.inference.capacity.value}"
        )
        child = pulumi.ResourceOptions(parent=self)

        repo = aws.ecr.Repository(
            f"{name}-repo",
            # Release tags never move: a digest and its tag always agree. Only the build-cache
            # tags may move (ECR "Image tag mutability": exclusion filters, WILDCARD type).
            image_tag_mutability="IMMUTABLE_WITH_EXCLUSION",
            image_tag_mutability_exclusion_filters=[
                aws.ecr.RepositoryImageTagMutabilityExclusionFilterArgs(
                    filter=CACHE_TAG_PATTERN, filter_type="WILDCARD"
                )
            ],
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(
                scan_on_push=True
            ),
            # KMS without a key ARN uses the AWS-managed `aws/ecr` key: encryption at rest
            # under KMS without a customer key to pay for and keep policies on.
            encryption_configurations=[
                aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="KMS")
            ],
            force_delete=not settings.store.protect,
            opts=child,
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-lifecycle",
            repository=repo.name,
            policy=json.dumps(ecr_lifecycle_policy(settings.image.keep_images)),
            opts=child,
        )
        self.repository_url = repo.repository_url
        self.repository_name = repo.name
        self.repository_arn = repo.arn

        flavours = ["cpu", "gpu"] if settings.gpu_image else ["cpu"]
        self._refs: dict[str, pulumi.Output[str]] = {}
        if settings.image.pin:
            # Rollback: no build. Each flavour deploys its own pushed digest; settings.py requires
            # `gpu_pin` alongside `pin` on a gpu-ec2 stack.
            pins = {"cpu": settings.image.pin, "gpu": settings.image.gpu_pin}
            for flavour in flavours:
                digest = pins[flavour]
                self._refs[flavour] = repo.repository_url.apply(lambda url, d=digest: f"{url}@{d}")
        else:
            # Short-lived (12 h) credentials, fetched on every run; the provider does not diff
            # username/password, so a new token never triggers a rebuild.
            token = aws.ecr.get_authorization_token_output(
                registry_id=repo.registry_id, opts=pulumi.InvokeOutputOptions(parent=self)
            )
            registry = docker.RegistryArgs(
                server=repo.repository_url,
                username=token.user_name,
                password=pulumi.Output.secret(token.password),
            )
            for flavour in flavours:
                self._refs[flavour] = self._build(name, flavour, args.context, repo, registry)

        self.register_outputs(
            {
                "repository_url": self.repository_url,
                "repository_name": self.repository_name,
                "repository_arn": self.repository_arn,
                "image_refs": dict(self._refs),
            }
        )

    def _build(
        self,
        name: str,
        flavour: str,
        context: Path,
        repo: aws.ecr.Repository,
        registry: docker.RegistryArgs,
    ) -> pulumi.Output[str]:
        tag = context_tag(context, flavour)
        cache_name = repo.repository_url.apply(lambda url: f"{url}:cache-{flavour}")
        # Relative to the project directory (Pulumi's working directory): an absolute path would
        # differ between machines and show as a diff, rebuilding an unchanged image.
        relative = Path(os.path.relpath(context, PROJECT_ROOT)).as_posix()

        def build_args(cache_from: list[pulumi.Input[str]]) -> docker.DockerBuildArgs:
            return docker.DockerBuildArgs(
                context=relative,
                dockerfile=f"{relative}/Dockerfile",
                platform=PLATFORM,
                # BUILDKIT_INLINE_CACHE writes the cache metadata into the pushed image, which
                # `cacheFrom` needs (pulumi-docker `Image` docs, caching with ECR example).
                args={"FLAVOUR": flavour, "BUILDKIT_INLINE_CACHE": "1"},
                cache_from=docker.CacheFromArgs(images=cache_from) if cache_from else None,
            )

        release = docker.Image(
            f"{name}-{flavour}",
            image_name=repo.repository_url.apply(lambda url: f"{url}:{tag}"),
            build=build_args([cache_name]),
            registry=registry,
            opts=pulumi.ResourceOptions(parent=self),
        )
        # Same build, same daemon: every layer is a local cache hit; the push moves the mutable
        # cache tag to the image just released, for the next build to start from.
        docker.Image(
            f"{name}-{flavour}-cache",
            image_name=cache_name,
            build=build_args([]),
            registry=registry,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[release]),
        )
        return release.repo_digest.apply(_checked_digest_ref)

    def image_ref(self, flavour: str) -> pulumi.Output[str]:
        """The pushed image for `flavour` ("cpu" or "gpu") as `<repo url>@sha256:<digest>`."""
        if flavour not in IMAGE_FLAVOURS:
            raise ValueError(f"image flavour {flavour!r}: use one of {', '.join(IMAGE_FLAVOURS)}")
        if flavour not in self._refs:
            raise ValueError(
                f"image flavour {flavour!r} is built only when mlops:training.capacity or "
                f"mlops:inference.capacity is gpu-ec2; this stack has {self._capacities}"
            )
        return self._refs[flavour]


def _checked_digest_ref(ref: str | None) -> str:
    # Unknown during preview (the apply does not run); after a push the provider returns the
    # registry's RepoDigest. Anything else (a local image id) must not reach a task definition.
    if ref is None or not _DIGEST_REF.fullmatch(ref):
        raise ValueError(f"docker.Image returned {ref!r}, not a pushed repo@sha256 reference")
    return ref

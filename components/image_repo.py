"""ImageRepo: the ECR repository and the container image, deployed by digest.

Creates:
- `<name>-repo`: the release repository `<project>-<stack>`: scan on push, KMS encryption
  (AWS-managed key), every tag IMMUTABLE, deletable with its images only where the stack does not
  retains its data (`protection.retain_on_destroy`), and its lifecycle policy (documents/image.py
  `ecr_lifecycle_policy`): untagged images expire after a day, each flavour keeps its newest
  `image.keep_images` release tags;
- `<name>-cache` (+ `-cache-lifecycle`): the mutable `<project>-<stack>-build-cache`
  repository holding one `cache-<flavour>` image per flavour, for `cacheFrom`; replaced caches
  expire a day later;
- per flavour, and only when its release tag is not in ECR yet, a `docker.Image` built from
  `app/` for linux/amd64 and pushed with a short-lived ECR token (kept secret), tagged
  `<flavour>-<content hash>`, plus a second one moving the flavour's cache tag.

Release tags are content hashes and builds are not reproducible: rebuilding content that was
already pushed gives a new digest under an existing immutable tag, which ECR refuses
(`ImageTagAlreadyExistsException`). So `release()` first looks the tag up in ECR and, when it is
there, deploys that image's digest and builds nothing: unpinning after a rollback, a `git revert`
of `app/` and a retried `pulumi up` all reuse what was pushed. (Dropping a `docker.Image` from
the program never deletes the pushed image: pulumi-docker issue #588.)

Two phases: the constructor declares the repositories; `release(after=...)` builds what is
missing once the resources that must see the push exist (the training trigger: ECR sends the
push event once, to the rules that exist then). Consumers take `image_ref(flavour)`, a
`repo@sha256:...` reference that resolves at release, never a mutable tag.

Flavours: `cpu` always; `gpu` (CUDA base, CUDA-enabled XGBoost) only when training or serving
runs on GPU EC2. `image.pin: sha256:...` (with `image.gpu_pin` on a gpu-ec2 stack) builds
nothing and deploys those already-pushed digests (rollback).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_docker as docker

from components.documents.image import (
    BUILD_CACHE_SUFFIX,
    IMAGE_FLAVOURS,
    ecr_cache_lifecycle_policy,
    ecr_lifecycle_policy,
)
from components.settings.platform import ImageSettings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
APP_DIR = PROJECT_ROOT / "app"
PLATFORM_DIR = PROJECT_ROOT / "platform"
CONTRACT = PROJECT_ROOT / "mlops_contract.py"
"""The container contract (one module); the contexts in `CONTRACT_CONTEXTS` carry a copy."""
CONTRACT_CONTEXTS = (APP_DIR, PLATFORM_DIR)
"""The project's own images: the reference workload's and the platform's staging image."""
PLATFORM = "linux/amd64"
"""ECS GPU AMIs and Fargate tasks here are x86_64 (aws_facts.GPU_INSTANCES excludes Graviton)."""
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


def ship_contract(context: Path) -> None:
    """Put the container contract (`mlops_contract.py`) into one of the project's own build
    contexts, which Docker sends without anything outside it (a symlink to the repository's
    file would arrive dangling). Every build of those images comes through here first: the
    release tag's hash (`context_tag`), run_local and the container tests, which build from the
    plan or call this. The copy is ignored by git; the repository's file is the one to edit."""
    if Path(context).resolve() not in CONTRACT_CONTEXTS:
        return
    target = Path(context) / CONTRACT.name
    data = CONTRACT.read_bytes()
    if not target.is_file() or target.read_bytes() != data:
        target.write_bytes(data)


def context_tag(
    context: Path, flavour: str, build_args: Mapping[str, str] | None = None, dockerfile: str = ""
) -> str:
    """`<flavour>-<16 hex>`: a hash of every context file's path and bytes, the flavour and the
    platform (and the workload's build args and Dockerfile name, when it gives them). The same
    context gives the same tag on any machine; any change gives a new one.
    """
    ship_contract(context)
    digest = hashlib.sha256(f"{flavour}\0{PLATFORM}\0".encode())
    if build_args or dockerfile not in ("", "Dockerfile"):
        digest.update(json.dumps([dockerfile, dict(build_args or {})], sort_keys=True).encode())
    for relative, path in context_files(context):
        data = path.read_bytes()
        digest.update(f"{relative}\0{len(data)}\0".encode())
        digest.update(data)
    return f"{flavour}-{digest.hexdigest()[:16]}"


# ------------------------------------------------------------------------------- component


@dataclass
class ImageRepoArgs:
    stack: str
    """The stack's name: the repository is `<project>-<stack>`."""
    image: ImageSettings
    """`mlops:image`: keep_images, pin, gpu_pin."""
    flavours: tuple[str, ...]
    """The flavours to build and keep (`Settings.image_flavours`): `cpu`, and `gpu` when
    training or serving runs on GPU EC2."""
    retain_on_destroy: bool = False
    """`protection.retain_on_destroy`: the repository is not deleted while it holds images."""
    context: Path = APP_DIR
    """The Docker build context (`workload.image.build.context`); its Dockerfile builds both
    flavours (`--build-arg FLAVOUR`)."""
    dockerfile: str = "Dockerfile"
    """Relative to `context`."""
    build_args: Mapping[str, str] = field(default_factory=dict)
    """`workload.image.build.args`, for both flavours."""
    gpu_build_args: Mapping[str, str] = field(default_factory=dict)
    """`workload.image.build.gpu_args`, for the gpu flavour."""
    suffix: str = ""
    """Appended to the repository's name (`-platform`: the platform image's own repository)."""


class ImageRepo(pulumi.ComponentResource):
    repository_url: pulumi.Output[str]
    repository_name: pulumi.Output[str]
    repository_arn: pulumi.Output[str]

    def __init__(self, name: str, args: ImageRepoArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:index:ImageRepo", name, None, opts)
        self._name = name
        self._args = args
        unknown = set(args.flavours) - set(IMAGE_FLAVOURS)
        if "cpu" not in args.flavours or unknown:
            raise ValueError(f"image flavours {args.flavours}: cpu, and gpu or not")
        self._flavours = list(args.flavours)
        self._released = False
        child = pulumi.ResourceOptions(parent=self)
        # A fixed name, so `release()` can look the release tags up before anything is declared;
        # one repository per project and stack.
        self._repository = f"{pulumi.get_project()}-{args.stack}{args.suffix}".lower()

        repo = aws.ecr.Repository(
            f"{name}-repo",
            name=self._repository,
            # Every tag, release tags included, names one digest forever (ECR "Image tag
            # mutability"); build caches live in their own repository.
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(
                scan_on_push=True
            ),
            # KMS without a key ARN uses the AWS-managed `aws/ecr` key: encryption at rest
            # under KMS without a customer key to pay for and keep policies on.
            encryption_configurations=[
                aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="KMS")
            ],
            force_delete=not args.retain_on_destroy,
            opts=child,
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-lifecycle",
            repository=repo.name,
            policy=json.dumps(ecr_lifecycle_policy(args.image.keep_images, self._flavours)),
            opts=child,
        )
        # Declared even when nothing is built, so the cache outlives deploys that reuse tags.
        cache = aws.ecr.Repository(
            f"{name}-cache",
            name=f"{self._repository}{BUILD_CACHE_SUFFIX}",
            # The cache tags move to every new build; nothing deploys from this repository.
            image_tag_mutability="MUTABLE",
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(
                scan_on_push=True
            ),
            encryption_configurations=[
                aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="KMS")
            ],
            force_delete=True,  # only build caches: losing them costs one slower build
            opts=child,
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-cache-lifecycle",
            repository=cache.name,
            policy=json.dumps(ecr_cache_lifecycle_policy(self._flavours)),
            opts=child,
        )
        self._repo = repo
        self._cache = cache
        self.repository_url = repo.repository_url
        self.repository_name = repo.name
        self.repository_arn = repo.arn

        self._refs: dict[str, pulumi.Output[str]] = {}
        self._resolvers: dict[str, Callable[[pulumi.Output[str]], None]] = {}
        for flavour in self._flavours:
            self._refs[flavour], self._resolvers[flavour] = pulumi.deferred_output()

        self.register_outputs(
            {
                "repository_url": self.repository_url,
                "repository_name": self.repository_name,
                "repository_arn": self.repository_arn,
                "image_refs": dict(self._refs),
            }
        )

    def release(self, after: Sequence[pulumi.Resource] = ()) -> None:
        """Resolve every flavour's image: the pin, the pushed release tag, or a new build pushed
        once `after` exists. Call it once, after the resources that must see the push."""
        if self._released:
            raise ValueError(f"ImageRepo {self._name}: release was already called")
        self._released = True
        image = self._args.image
        repo, cache = self._repo, self._cache
        if image.pin:
            # Rollback: no build. Each flavour deploys its own pushed digest; settings/stack.py
            # requires `gpu_pin` alongside `pin` on a gpu-ec2 stack.
            pins = {"cpu": image.pin, "gpu": image.gpu_pin}
            for flavour in self._flavours:
                digest = pins[flavour]
                self._resolvers[flavour](
                    repo.repository_url.apply(lambda url, d=digest: f"{url}@{d}")
                )
            return

        tags = {flavour: self._tag(flavour) for flavour in self._flavours}
        pushed = self._pushed_digests()
        missing = [flavour for flavour in self._flavours if tags[flavour] not in pushed]
        for flavour in self._flavours:
            if tags[flavour] in pushed:
                digest = pushed[tags[flavour]]
                self._resolvers[flavour](
                    repo.repository_url.apply(lambda url, d=digest: f"{url}@{d}")
                )
        if not missing:
            return

        # Short-lived (12 h) credentials, fetched on every run; the provider does not diff
        # username/password, so a new token never triggers a rebuild. One token serves every
        # repository of the registry.
        token = aws.ecr.get_authorization_token_output(
            registry_id=repo.registry_id, opts=pulumi.InvokeOutputOptions(parent=self)
        )

        def registry(server: pulumi.Input[str]) -> docker.RegistryArgs:
            return docker.RegistryArgs(
                server=server,
                username=token.user_name,
                password=pulumi.Output.secret(token.password),
            )

        for flavour in missing:
            ref = self._build(
                flavour,
                tags[flavour],
                repo,
                cache,
                registry(repo.repository_url),
                registry(cache.repository_url),
                list(after),
            )
            self._resolvers[flavour](ref)

    def _tag(self, flavour: str) -> str:
        extra, dockerfile = self._flavour_args(flavour), self._args.dockerfile
        if extra or dockerfile != "Dockerfile":
            return context_tag(self._args.context, flavour, extra, dockerfile)
        return context_tag(self._args.context, flavour)

    def _flavour_args(self, flavour: str) -> dict[str, str]:
        extra = self._args.gpu_build_args if flavour == "gpu" else {}
        return {**self._args.build_args, **extra}

    def _pushed_digests(self) -> dict[str, str]:
        """Release tag -> digest of every image in the release repository; {} before it exists.

        Looked up while the program runs (preview included), so the plan already shows whether a
        flavour is built. `ecr.get_repositories` lists the Region's repository names and never
        fails for a missing one; `ecr.get_images` lists a repository's image ids (tag, digest).
        """
        invoke = pulumi.InvokeOptions(parent=self)
        if self._repository not in (aws.ecr.get_repositories(opts=invoke).names or []):
            return {}
        images = aws.ecr.get_images(repository_name=self._repository, opts=invoke)
        return {
            image.image_tag: image.image_digest
            for image in images.image_ids or []
            if image.image_tag and image.image_digest
        }

    def _build(
        self,
        flavour: str,
        tag: str,
        repo: aws.ecr.Repository,
        cache: aws.ecr.Repository,
        registry: docker.RegistryArgs,
        cache_registry: docker.RegistryArgs,
        after: list[pulumi.Resource],
    ) -> pulumi.Output[str]:
        cache_name = cache.repository_url.apply(lambda url: f"{url}:cache-{flavour}")
        # Relative to the project directory (Pulumi's working directory): an absolute path would
        # differ between machines and show as a diff, rebuilding an unchanged image.
        relative = Path(os.path.relpath(self._args.context, PROJECT_ROOT)).as_posix()

        def build_args(cache_from: list[pulumi.Input[str]]) -> docker.DockerBuildArgs:
            return docker.DockerBuildArgs(
                context=relative,
                dockerfile=f"{relative}/{self._args.dockerfile}",
                platform=PLATFORM,
                # BUILDKIT_INLINE_CACHE writes the cache metadata into the pushed image, which
                # `cacheFrom` needs (pulumi-docker `Image` docs, caching with ECR example).
                args={
                    **self._flavour_args(flavour),
                    "FLAVOUR": flavour,
                    "BUILDKIT_INLINE_CACHE": "1",
                },
                cache_from=docker.CacheFromArgs(images=cache_from) if cache_from else None,
            )

        release = docker.Image(
            f"{self._name}-{flavour}",
            image_name=repo.repository_url.apply(lambda url: f"{url}:{tag}"),
            build=build_args([cache_name]),
            registry=registry,
            # The push is what starts a training run: whatever must see it exists first.
            opts=pulumi.ResourceOptions(parent=self, depends_on=after),
        )
        # Same build, same daemon: every layer is a local cache hit; the push moves the
        # flavour's cache tag to the image just released, for the next build to start from.
        docker.Image(
            f"{self._name}-{flavour}-cache",
            image_name=cache_name,
            build=build_args([]),
            registry=cache_registry,
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
                f"mlops:inference.capacity is gpu-ec2; this stack builds "
                f"{', '.join(self._flavours)} only"
            )
        return self._refs[flavour]


def _checked_digest_ref(ref: str | None) -> str:
    # Unknown during preview (the apply does not run); after a push the provider returns the
    # registry's RepoDigest. Anything else (a local image id) must not reach a task definition.
    if ref is None or not _DIGEST_REF.fullmatch(ref):
        raise ValueError(f"docker.Image returned {ref!r}, not a pushed repo@sha256 reference")
    return ref


if __name__ == "__main__":
    # `python -m components.image_repo ship`: the contract into the project's own contexts, for a
    # `docker build` by hand.
    import sys

    if sys.argv[1:] != ["ship"]:
        sys.exit("usage: python -m components.image_repo ship")
    for directory in CONTRACT_CONTEXTS:
        ship_contract(directory)
        print(f"{CONTRACT.name} -> {directory.relative_to(PROJECT_ROOT)}/")

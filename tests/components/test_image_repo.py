"""ImageRepo: the ECR repository, the content-tagged image builds and the digest references."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pulumi
import pytest

from components.image_repo import (
    APP_DIR,
    ImageRepo,
    ImageRepoArgs,
    context_files,
    context_tag,
)
from components.settings import stack as stack_settings
from preflight.offline import (
    ACCOUNT,
    SECRET_SIG,
    EcrState,
    Plan,
    Resource,
    run_program,
    run_stack,
    stack_config,
)

REPO = "aws:ecr/repository:Repository"
LIFECYCLE = "aws:ecr/lifecyclePolicy:LifecyclePolicy"
IMAGE = "docker:index/image:Image"
DIGEST_REF = re.compile(r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/[^@]+@sha256:[0-9a-f]{64}$")
PIN = "sha256:" + "a" * 64
SECRET_KEY = "4dabf18193072939515e22adb298388d"  # the Pulumi wire marker of a secret value


def release(plan: Plan, flavour: str) -> Resource:
    (image,) = [r for r in plan.of_type(IMAGE) if r.name == f"image-{flavour}"]
    return image


def cache_image(plan: Plan, flavour: str) -> Resource:
    (image,) = [r for r in plan.of_type(IMAGE) if r.name == f"image-{flavour}-cache"]
    return image


def unwrap_secret(value: dict) -> dict:
    """The plain value inside a secret as the mock monitor records it."""
    assert value.get(SECRET_KEY) == SECRET_SIG, f"not a secret: {value!r}"
    return value["value"]


def stack_settings_for(stack: str, **image) -> stack_settings.Settings:
    raw = {k.split(":", 1)[1]: v for k, v in stack_config(stack).items() if k.startswith("mlops:")}
    raw["image"] = {**raw.get("image", {}), **image}
    return stack_settings.parse(raw, stack=stack)


def repo_args(settings: stack_settings.Settings, context: Path = APP_DIR) -> ImageRepoArgs:
    """What `__main__.py` gives the component, from the stack config."""
    return ImageRepoArgs(
        stack=settings.stack,
        image=settings.image,
        flavours=settings.image_flavours,
        retain_on_destroy=settings.protection.retain_on_destroy,
        context=context,
    )


def repo_program(settings: stack_settings.Settings, context: Path = APP_DIR, calls=(), after=()):
    def program() -> None:
        repo = ImageRepo("image", repo_args(settings, context))
        repo.release(after=list(after))
        for call in calls:
            call(repo)

    return program


def releases(plan: Plan) -> Resource:
    return plan.one(REPO, "image-repo")


def cache_repo(plan: Plan) -> Resource:
    return plan.one(REPO, "image-cache")


# ----------------------------------------------------------------------------- repository


def test_release_repository_is_scanned_encrypted_and_every_tag_immutable(plan: Plan):
    inputs = releases(plan).inputs
    assert inputs["imageScanningConfiguration"] == {"scanOnPush": True}
    assert inputs["encryptionConfigurations"] == [{"encryptionType": "KMS"}]
    assert inputs["imageTagMutability"] == "IMMUTABLE"
    assert "imageTagMutabilityExclusionFilters" not in inputs
    # A fixed name: the program looks its release tags up before declaring a build.
    assert inputs["name"] == f"mlops-{plan.stack}"


def test_build_caches_live_in_their_own_mutable_repository_with_a_short_lifecycle(plan: Plan):
    inputs = cache_repo(plan).inputs
    assert inputs["name"] == f"mlops-{plan.stack}-build-cache"
    assert inputs["imageTagMutability"] == "MUTABLE"
    assert inputs["forceDelete"] is True
    lifecycle = plan.one(LIFECYCLE, "image-cache-lifecycle")
    assert lifecycle.inputs["repository"] == inputs["name"]
    rules = json.loads(lifecycle.inputs["policy"])["rules"]
    assert rules[0]["selection"] == {
        "tagStatus": "untagged",
        "countType": "sinceImagePushed",
        "countUnit": "days",
        "countNumber": 1,
    }
    assert {r["selection"]["countNumber"] for r in rules[1:]} == {1}


def test_only_the_unprotected_stack_can_delete_a_repository_with_images(dev_plan, prod_plan):
    assert releases(dev_plan).inputs["forceDelete"] is True
    assert releases(prod_plan).inputs["forceDelete"] is False


@pytest.mark.parametrize(
    ("stack", "keep", "prefixes"), [("dev", 20, ["cpu-"]), ("prod", 50, ["cpu-", "gpu-"])]
)
def test_lifecycle_policy_is_attached_and_keeps_the_configured_count(
    stack, keep, prefixes, request
):
    plan = request.getfixturevalue(f"{stack}_plan")
    lifecycle = plan.one(LIFECYCLE, "image-lifecycle")
    assert lifecycle.inputs["repository"] == releases(plan).outputs["name"]
    rules = json.loads(lifecycle.inputs["policy"])["rules"]
    assert rules[0]["selection"]["tagStatus"] == "untagged"
    assert {r["selection"]["countNumber"] for r in rules[1:]} == {keep}
    assert [r["selection"]["tagPrefixList"][0] for r in rules[1:]] == prefixes


# ---------------------------------------------------------------------------------- images


@pytest.mark.parametrize(("stack", "flavours"), [("dev", ["cpu"]), ("prod", ["cpu", "gpu"])])
def test_gpu_flavour_is_built_only_for_gpu_ec2_training(stack, flavours, request):
    plan = request.getfixturevalue(f"{stack}_plan")
    built = sorted(r.inputs["build"]["args"]["FLAVOUR"] for r in plan.of_type(IMAGE))
    assert built == sorted(flavours * 2)  # a release image and a cache-tag image each


@pytest.mark.parametrize("flavour", ["cpu", "gpu"])
def test_release_image_builds_app_for_amd64_with_its_flavour(prod_plan, flavour):
    image = release(prod_plan, flavour)
    url = releases(prod_plan).outputs["repositoryUrl"]
    assert image.inputs["imageName"] == f"{url}:{context_tag(APP_DIR, flavour)}"
    build = image.inputs["build"]
    # Relative to the project directory: the same inputs on every machine.
    assert build["context"] == "app"
    assert build["dockerfile"] == "app/Dockerfile"
    assert build["platform"] == "linux/amd64"
    assert build["args"] == {"FLAVOUR": flavour, "BUILDKIT_INLINE_CACHE": "1"}
    cache_url = cache_repo(prod_plan).outputs["repositoryUrl"]
    assert build["cacheFrom"] == {"images": [f"{cache_url}:cache-{flavour}"]}
    assert image.inputs.get("skipPush", False) is False


def test_cache_tag_moves_only_after_the_release_is_pushed(prod_plan):
    for flavour in ("cpu", "gpu"):
        cache = cache_image(prod_plan, flavour)
        url = cache_repo(prod_plan).outputs["repositoryUrl"]
        assert cache.inputs["imageName"] == f"{url}:cache-{flavour}"
        assert release(prod_plan, flavour).urn in cache.depends_on
        assert cache.inputs["build"]["args"]["FLAVOUR"] == flavour


def test_registry_login_uses_a_secret_ecr_token(plan: Plan):
    for image in plan.of_type(IMAGE):
        repo = cache_repo(plan) if image.name.endswith("-cache") else releases(plan)
        url = repo.outputs["repositoryUrl"]
        assert "registry" in image.secret_inputs
        registry = unwrap_secret(image.inputs["registry"])
        assert registry["server"] == url
        assert registry["username"] == "AWS"
        assert registry["password"].startswith("ecr-token-")
    tokens = [args for token, args in plan.calls if token.startswith("aws:ecr/getAuthorization")]
    assert tokens and all(args.get("registryId") == ACCOUNT for args in tokens)


def test_exports_the_cpu_release_digest(plan: Plan):
    assert plan.exports["repository_url"] == releases(plan).outputs["repositoryUrl"]
    assert DIGEST_REF.fullmatch(plan.exports["image_ref"])
    assert plan.exports["image_ref"] == release(plan, "cpu").outputs["repoDigest"]


def export_refs(repo: ImageRepo) -> None:
    for flavour in ("cpu", "gpu"):
        pulumi.export(flavour, repo.image_ref(flavour))


def test_image_refs_are_the_release_digests_per_flavour():
    plan = run_program(repo_program(stack_settings_for("prod"), calls=[export_refs]))
    for flavour in ("cpu", "gpu"):
        assert DIGEST_REF.fullmatch(plan.exports[flavour])
        assert plan.exports[flavour] == release(plan, flavour).outputs["repoDigest"]
    assert plan.exports["cpu"] != plan.exports["gpu"]


@pytest.mark.parametrize("flavour", ["arm", "GPU", ""])
def test_unknown_flavours_are_refused(flavour):
    def ask(repo: ImageRepo) -> None:
        repo.image_ref(flavour)

    with pytest.raises(ValueError, match="use one of cpu, gpu"):
        run_program(repo_program(stack_settings_for("dev", pin=PIN), calls=[ask]))


def test_asking_for_gpu_without_gpu_training_names_the_setting():
    def ask(repo: ImageRepo) -> None:
        repo.image_ref("gpu")

    with pytest.raises(
        ValueError, match=r"mlops:inference\.capacity is gpu-ec2; this stack builds cpu only"
    ):
        run_program(repo_program(stack_settings_for("dev"), calls=[ask]))


# -------------------------------------------------------------------------------------- pin


def test_a_pin_builds_nothing_and_deploys_the_pinned_digest():
    plan = run_stack("dev", {"image": {"pin": PIN}})
    assert plan.of_type(IMAGE) == []
    assert not [c for c, _ in plan.calls if c.startswith("aws:ecr/getAuthorization")]
    url = releases(plan).outputs["repositoryUrl"]
    assert plan.exports["image_ref"] == f"{url}@{PIN}"
    assert DIGEST_REF.fullmatch(plan.exports["image_ref"])
    assert plan.one(LIFECYCLE, "image-lifecycle")  # the repository and its policy stay


def test_a_gpu_stack_pins_each_flavour_to_its_own_digest():
    gpu_pin = "sha256:" + "b" * 64
    settings = stack_settings_for("prod", pin=PIN, gpu_pin=gpu_pin)
    plan = run_program(repo_program(settings, calls=[export_refs]))
    assert plan.of_type(IMAGE) == []
    url = releases(plan).outputs["repositoryUrl"]
    assert plan.exports == {"cpu": f"{url}@{PIN}", "gpu": f"{url}@{gpu_pin}"}


# ------------------------------------------------------------------------- content-hash tags


@pytest.fixture
def app_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "app"
    shutil.copytree(APP_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_same_context_gives_the_same_tag_anywhere(app_copy: Path):
    for flavour in ("cpu", "gpu"):
        assert context_tag(app_copy, flavour) == context_tag(APP_DIR, flavour)
    assert context_tag(app_copy, "cpu") != context_tag(app_copy, "gpu")
    assert re.fullmatch(r"cpu-[0-9a-f]{16}", context_tag(app_copy, "cpu"))


def test_a_changed_or_added_file_gives_a_new_tag(app_copy: Path):
    before = context_tag(app_copy, "cpu")
    (app_copy / "requirements.txt").write_text(
        (app_copy / "requirements.txt").read_text() + "\n# bump\n"
    )
    changed = context_tag(app_copy, "cpu")
    assert changed != before
    (app_copy / "extra.py").write_text("x = 1\n")
    assert context_tag(app_copy, "cpu") not in (before, changed)


def test_renaming_a_file_gives_a_new_tag(app_copy: Path):
    before = context_tag(app_copy, "cpu")
    (app_copy / "serving" / "batcher.py").rename(app_copy / "serving" / "batcher2.py")
    assert context_tag(app_copy, "cpu") != before


def test_ignored_files_never_change_the_tag(app_copy: Path):
    before = context_tag(app_copy, "cpu")
    for junk in (
        ".git/HEAD",
        "tests/test_x.py",
        "venv/bin/python",
        ".mlops-store/models/CURRENT",
        "__pycache__/model.cpython-312.pyc",
        "data/__pycache__/x.pyc",
        "test_model.py",
        ".pytest_cache/v/cache",
    ):
        path = app_copy / junk
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("junk")
    assert context_tag(app_copy, "cpu") == before


def test_dockerignore_follows_docker_matching_rules(tmp_path: Path):
    (tmp_path / ".dockerignore").write_text(
        "# comment\n/logs\n*.tmp\n**/cache\n!keep.tmp\ndocs/?.md\nDockerfile\n"
    )
    for name in (
        "Dockerfile",
        "logs/a.txt",
        "a.tmp",
        "keep.tmp",
        "sub/b.tmp",
        "sub/deep/cache/c",
        "docs/a.md",
        "docs/ab.md",
        "main.py",
    ):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)
    sent = [relative for relative, _ in context_files(tmp_path)]
    # `*.tmp` matches only at the root (Go filepath.Match: `*` stops at `/`); the Dockerfile
    # and .dockerignore are always sent to the daemon.
    assert sent == [".dockerignore", "Dockerfile", "keep.tmp", "main.py", "docs/ab.md", "sub/b.tmp"]


def test_component_tags_the_context_it_is_given(app_copy: Path):
    (app_copy / "extra.py").write_text("x = 2\n")
    plan = run_program(repo_program(stack_settings_for("dev"), context=app_copy))
    image = release(plan, "cpu")
    assert image.inputs["imageName"].endswith(":" + context_tag(app_copy, "cpu"))
    assert image.inputs["build"]["context"].endswith("/app")
    assert image.inputs["build"]["dockerfile"] == image.inputs["build"]["context"] + "/Dockerfile"


# ------------------------------------------------------------------- pushed tags are reused


def test_a_release_tag_already_in_ecr_is_deployed_by_its_digest_and_not_rebuilt():
    tag = context_tag(APP_DIR, "cpu")
    pushed = "sha256:" + "c" * 64
    ecr = EcrState(repositories={"mlops-dev": {tag: pushed}})
    plan = run_stack("dev", ecr=ecr)
    assert plan.of_type(IMAGE) == []
    assert plan.exports["image_ref"] == f"{releases(plan).outputs['repositoryUrl']}@{pushed}"
    assert ecr.builds == 0


def test_the_push_waits_for_what_must_see_it():
    def program() -> None:
        trigger = pulumi.CustomResource("test:index:Trigger", "trigger")
        repo = ImageRepo("image", repo_args(stack_settings_for("dev")))
        repo.release(after=[trigger])

    plan = run_program(program)
    trigger_urn = next(r.urn for r in plan.resources if r.name == "trigger")
    assert trigger_urn in release(plan, "cpu").depends_on


def test_release_may_be_called_once():
    def twice(repo: ImageRepo) -> None:
        repo.release()

    with pytest.raises(ValueError, match="release was already called"):
        run_program(repo_program(stack_settings_for("dev"), calls=[twice]))

"""app/Dockerfile, read as Docker would: stages, what the shipped stage inherits, how it runs.

No Docker daemon exists here, so the file is parsed: continuation lines joined, comments
dropped, `FROM ... AS name` splitting it into stages, and `FROM <stage>` followed back to the
base image so the checks cover every layer the runtime image is made of.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import pytest

from components.documents.common import APP_UID
from components.image_repo import APP_DIR, context_files

DOCKERFILE = APP_DIR / "Dockerfile"
COMPILERS = re.compile(r"\b(gcc|g\+\+|clang|build-essential|cmake|make|python3-dev|\S+-devel?)\b")


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages in order)."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped too
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", args, re.I)
            assert match, f"unreadable FROM: {line}"
            stages.append(Stage(name=match.group(2) or str(len(stages)), base=match.group(1)))
        elif not stages:
            assert keyword == "ARG", f"only ARG may precede the first FROM, got {line}"
            name, _, default = args.partition("=")
            global_args[name] = default
        else:
            stages[-1].instructions.append((keyword, args))
    return global_args, stages


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    return parse(DOCKERFILE.read_text())


def lineage(stages: list[Stage], global_args: dict[str, str], flavour: str) -> list[Stage]:
    """The final stage and every stage it is built FROM, down to an external base image."""
    by_name = {stage.name: stage for stage in stages}
    chain = [stages[-1]]
    while True:
        base = re.sub(
            r"\$\{?(\w+)\}?",
            lambda m: flavour if m.group(1) == "FLAVOUR" else global_args[m.group(1)],
            chain[-1].base,
        )
        if base not in by_name:
            return chain
        chain.append(by_name[base])


def external_base(stages, global_args, flavour: str) -> str:
    last = lineage(stages, global_args, flavour)[-1]
    name = last.base.strip("${}")
    return global_args.get(name, last.base)


def test_flavour_defaults_to_cpu_and_selects_the_base(dockerfile):
    global_args, stages = dockerfile
    assert global_args["FLAVOUR"] == "cpu"
    assert re.fullmatch(r"python:3\.\d+-slim(-\w+)?", external_base(stages, global_args, "cpu"))
    gpu = external_base(stages, global_args, "gpu")
    # The CUDA *runtime* image: no nvcc and no headers (those are in -devel).
    assert re.fullmatch(r"nvidia/cuda:12\.\d+\.\d+-runtime-ubuntu\d+\.\d+", gpu)


@pytest.mark.parametrize("flavour", ["cpu", "gpu"])
def test_shipped_stages_install_no_compilers(dockerfile, flavour):
    global_args, stages = dockerfile
    for stage in lineage(stages, global_args, flavour):
        for run in stage.all("RUN"):
            assert not COMPILERS.search(run), f"stage {stage.name} installs a compiler: {run}"


def test_dependencies_are_installed_and_slimmed_in_a_builder_and_copied(dockerfile):
    global_args, stages = dockerfile
    shipped = {stage.name for f in ("cpu", "gpu") for stage in lineage(stages, global_args, f)}
    (builder,) = [s for s in stages if any("pip install" in run for run in s.all("RUN"))]
    assert builder.name not in shipped
    runs = builder.all("RUN")
    install = next(i for i, run in enumerate(runs) if "pip install" in run)
    slim = next(i for i, run in enumerate(runs) if "slim.py prune" in run)
    assert install < slim, "slimming must follow the installation"
    assert "--no-compile -r /tmp/requirements.txt" in runs[install]
    assert "slim.py prune /opt/venv" in runs[slim] and "slim.py strip /opt/venv" in runs[slim]
    assert "import dash" in runs[slim]  # the import check runs on the slimmed venv
    runtime = stages[-1]
    assert not any("pip install" in run for run in runtime.all("RUN"))
    copies = [args for kw, args in runtime.instructions if kw == "COPY" and "--from" in args]
    assert copies == [f"--from={builder.name} /opt/venv /opt/venv"]
    # The api's bytecode is written after the app is in place, as root, before USER drops it.
    keywords = [kw for kw, _ in runtime.instructions]
    warm = next(i for i, (kw, a) in enumerate(runtime.instructions) if "app.slim warm" in a)
    app_copy = runtime.instructions.index(("COPY", ". /srv/app"))
    assert app_copy < warm < keywords.index("USER")


def test_runs_as_the_non_root_store_user(dockerfile):
    _, stages = dockerfile
    users = stages[-1].all("USER")
    assert users == [f"{APP_UID}:{APP_UID}"]
    (useradd,) = [run for run in stages[-1].all("RUN") if "useradd" in run]
    assert f"--uid {APP_UID}" in useradd and f"--gid {APP_UID}" in useradd
    # Nothing after USER runs as root again.
    keywords = [kw for kw, _ in stages[-1].instructions]
    assert "RUN" not in keywords[keywords.index("USER") :]


def test_no_image_health_check_and_tmp_is_a_volume(dockerfile):
    """ECS runs only the task definition's healthCheck; a baked-in one would be wrong for every
    command but serve. /tmp is declared last so Fargate copies its 1777 mode into the scratch
    volume (tests/containers prove both on the built image)."""
    _, stages = dockerfile
    runtime = stages[-1]
    assert runtime.all("HEALTHCHECK") == []
    assert runtime.all("VOLUME") == ["/tmp"]
    keywords = [kw for kw, _ in runtime.instructions]
    assert "RUN" not in keywords[keywords.index("VOLUME") :]


def test_entrypoint_ports_and_python_settings(dockerfile):
    _, stages = dockerfile
    runtime = stages[-1]
    assert runtime.all("EXPOSE") == ["8080 8050"]
    assert [json.loads(e) for e in runtime.all("ENTRYPOINT")] == [["python", "-m", "app"]]
    assert [json.loads(c) for c in runtime.all("CMD")] == [["serve"]]
    env = " ".join(args for s in stages for args in s.all("ENV"))
    for setting in ("PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "PATH=/opt/venv/bin"):
        assert setting in env


def test_image_gets_the_app_package_but_no_tests_caches_or_stores(tmp_path):
    sent = {relative for relative, _ in context_files(APP_DIR)}
    assert {"__main__.py", "__init__.py", "requirements.txt", "Dockerfile"} <= sent
    assert any(name.startswith("data/") for name in sent)
    for relative in sent:
        parts = relative.split("/")
        assert not {".git", "tests", "venv", ".venv", "__pycache__", ".mlops-store"} & set(parts)
        assert not relative.endswith(".pyc")


def test_parser_follows_continuations_and_stage_names():
    global_args, stages = parse(
        "ARG A=x\nFROM img:${A} AS one\n# note\nRUN a \\\n  # inner\n  && b\nFROM one\nUSER 1\n"
    )
    assert global_args == {"A": "x"}
    assert [(s.name, s.base) for s in stages] == [("one", "img:${A}"), ("1", "one")]
    assert stages[0].all("RUN") == ["a  && b"]
    assert [s.name for s in lineage(stages, global_args, "cpu")] == ["1", "one"]

"""app/slim.py: what the image keeps of its dependencies (run by app/Dockerfile and the benchmark).

Pruning is checked on a built tree and against the real Dash install (every bundle a browser gets
outside debug mode stays); stripping on real extension modules, which must still work after it,
and on a vendored library that `strip` would break, which must be left as it was.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app import slim

REPO_ROOT = Path(__file__).resolve().parents[2]
needs_strip = pytest.mark.skipif(shutil.which("strip") is None, reason="binutils not installed")


def write(root: Path, relative: str, size: int = 10) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path


@pytest.fixture
def venv(tmp_path: Path) -> tuple[Path, Path]:
    """A venv-shaped root: (root, its site-packages)."""
    site = tmp_path / "venv" / "lib" / "python3.12" / "site-packages"
    site.mkdir(parents=True)
    return tmp_path / "venv", site


def test_prune_removes_what_no_command_runs(venv):
    root, site = venv
    gone = [
        write(site, "pandas/tests/frame/test_frame.py", 100),
        write(site, "numpy/_core/tests/data/x.npy", 50),
        write(site, "pkg/__pycache__/mod.cpython-312.pyc", 30),
        write(site, "dash/dcc/async-graph.js.map", 400),
        write(site, "numpy/__init__.pyi", 20),
        write(site, "pandas/_libs/lib.pyx", 20),
        write(site, "scipy/linalg/cython_blas.pxd", 20),
        write(site, "dash/deps/react@18.3.1.js", 300),
        write(site, "dash/dash-renderer/build/dash_renderer.dev.js", 800),
        write(site, "plotly/labextension/static/0.js", 500),
        write(site, "plotly/package_data/widgetbundle.js", 500),
        write(root, "share/jupyter/labextensions/jupyterlab-plotly/package.json", 40),
        write(root, "etc/jupyter/nbconfig/notebook.d/plotly.json", 40),
    ]
    kept = [
        write(site, "dash/deps/react@18.3.1.min.js"),
        write(site, "dash/dash-renderer/build/dash_renderer.min.js"),
        write(site, "dash/dcc/async-graph.js"),  # no .min.js next to it: it is the production one
        write(site, "dash/dcc/async-graph.js.LICENSE.txt"),
        write(site, "plotly/package_data/plotly.min.js"),
        write(site, "plotly/package_data/templates/plotly.json"),
        write(site, "numpy/py.typed"),
        write(site, "pkg/tests.py"),  # a module named tests, not a test suite
        write(site, "pkg/testing/__init__.py"),
        write(site, "scipy-1.0.dist-info/LICENSE.txt"),
        write(site, "pandas/_libs/lib.cpython-312-x86_64-linux-gnu.so"),
    ]

    report = slim.prune([root])

    assert [path for path in gone if path.exists()] == []
    assert [path for path in kept if not path.exists()] == []
    assert report.removed_files == len(gone)
    assert report.removed_bytes == sum([100, 50, 30, 400, 20, 20, 20, 300, 800, 500, 500, 40, 40])
    assert not (site / "pandas" / "tests").exists() and (site / "pandas" / "_libs").is_dir()
    assert slim.prune([root]).summary() == "nothing to do"


def test_prune_works_on_a_pip_target_directory(tmp_path):
    # `pip install --target` puts packages at the top and data files under share/.
    write(tmp_path, "plotly/package_data/widgetbundle.js")
    write(tmp_path, "share/jupyter/labextensions/x.js")
    write(tmp_path, "numpy/tests/test_x.py")
    keep = write(tmp_path, "numpy/__init__.py")

    assert slim.prune([tmp_path]).removed_files == 3
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.*")) == [
        keep.relative_to(tmp_path).as_posix()
    ]


PUBLISH_WITH_PRUNED_BOTOCORE = """
import botocore.exceptions, botocore.session
from botocore.stub import Stubber
from app.loop.monitor import publish_drift_event
session = botocore.session.get_session()
client = session.create_client("events", region_name="eu-west-1")
with Stubber(client) as stub:
    stub.add_response("put_events", {"FailedEntryCount": 0, "Entries": [{"EventId": "e-1"}]})
    print(publish_drift_event(client, {"reasons": []}, "default"))
try:
    session.create_client("s3", region_name="eu-west-1")
except botocore.exceptions.UnknownServiceError:
    print("s3 pruned")
"""


@pytest.mark.slow
def test_prune_keeps_only_the_botocore_models_the_app_calls(tmp_path):
    import botocore

    target = tmp_path / "target"
    shutil.copytree(Path(botocore.__file__).parent, target / "botocore")
    before = slim._size(target)[1]

    slim.prune([target])

    kept = sorted(p.name for p in (target / "botocore" / "data").iterdir() if p.is_dir())
    assert kept == sorted(slim.BOTOCORE_SERVICES)
    assert slim._size(target)[1] < before / 4  # 22.6 MB -> 3.0 MB with botocore 1.44
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(REPO_ROOT)])}
    done = subprocess.run(
        [sys.executable, "-c", PUBLISH_WITH_PRUNED_BOTOCORE],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["e-1", "s3", "pruned"]


def dash_scripts() -> dict[str, set[Path]]:
    """Every script file Dash's own libraries register, by mode: "prod" (what a browser gets
    outside debug mode, source maps included) and "dev" (debug mode's bundles)."""
    import dash
    from dash import _dash_renderer, dash_table, dcc, html

    dash.Dash(__name__)  # registers plotly.js with dcc, as every app does
    found: dict[str, set[Path]] = {"prod": set(), "dev": set()}
    for module in (_dash_renderer, dcc, html, dash_table):
        for entry in [*getattr(module, "_js_dist_dependencies", []), *module._js_dist]:
            base = Path(importlib.import_module(entry["namespace"]).__file__).parent
            paths = entry.get("relative_package_path", [])
            by_mode = paths if isinstance(paths, dict) else {"prod": paths}
            if "dev_package_path" in entry:
                by_mode = {**by_mode, "dev": entry["dev_package_path"]}
            for mode, relatives in by_mode.items():
                for relative in [relatives] if isinstance(relatives, str) else relatives:
                    found[mode].add(base / relative)
    return found


def test_every_script_dash_serves_outside_debug_mode_is_kept():
    scripts = dash_scripts()["prod"]
    production = sorted(path for path in scripts if not path.name.endswith(".map"))
    site_packages = Path(importlib.util.find_spec("dash").origin).parents[1]
    assert len(production) > 15
    assert {"plotly.min.js", "dash_renderer.min.js"} <= {path.name for path in production}
    for path in production:
        assert path.is_file(), path
        assert not slim.removable(path), f"prune would remove {path}, which Dash serves"
        relative = path.relative_to(site_packages).as_posix()
        assert not any(relative.startswith(jupyter) for jupyter in slim.JUPYTER_PATHS), relative
    # Source maps are fetched only by a browser's developer tools.
    maps = [path for path in scripts if path.name.endswith(".map")]
    assert maps and all(slim.removable(path) for path in maps)


def test_dash_debug_bundles_are_the_ones_pruned():
    scripts = dash_scripts()
    pruned = {path.name for path in scripts["dev"] - scripts["prod"] if slim.removable(path)}
    assert "dash_renderer.dev.js" in pruned
    assert any(name.startswith("react@") and not name.endswith(".min.js") for name in pruned)


def test_site_packages_of_a_venv_and_of_a_target_directory(venv, tmp_path):
    root, site = venv
    assert slim.site_packages(root) == [site]
    target = tmp_path / "target"
    target.mkdir()
    assert slim.site_packages(target) == [target]


def copy_package(name: str, destination: Path) -> Path:
    source = Path(importlib.util.find_spec(name).origin).parent
    shutil.copytree(source, destination / name, ignore=shutil.ignore_patterns("__pycache__"))
    return destination / name


PARSE_REQUEST = """
import httptools

class Request:
    def on_url(self, url):
        self.url = url

parsed = Request()
httptools.HttpRequestParser(parsed).feed_data(b"GET /ready?x=1 HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n")
print(httptools.__file__, parsed.url.decode())
"""


@needs_strip
def test_strip_shrinks_extension_modules_that_still_work(tmp_path):
    package = copy_package("httptools", tmp_path)
    modules = sorted(package.rglob("*.so"))
    before = sum(path.stat().st_size for path in modules)

    report = slim.strip([tmp_path])

    after = sum(path.stat().st_size for path in modules)
    assert report.stripped_files == len(modules) > 0
    assert report.stripped_bytes == before - after > before / 2
    assert report.kept_unstripped == []
    assert not list(tmp_path.rglob(".strip-*"))  # no temporary copy left behind
    done = subprocess.run(
        [sys.executable, "-S", "-c", PARSE_REQUEST],
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split() == [str(package / "__init__.py"), "/ready?x=1"]


def vendored_gfortran() -> list[Path]:
    libs = Path(importlib.util.find_spec("numpy").origin).parent.parent / "numpy.libs"
    return sorted(libs.glob("libgfortran-*")) + sorted(libs.glob("libquadmath-*"))


@needs_strip
def test_strip_keeps_a_library_it_would_break(tmp_path):
    """numpy's vendored libgfortran, rewritten by patchelf, no longer loads once stripped
    ("ELF load command address/offset not page-aligned"). Outside `*.libs/`, where strip would
    try it, the load check must keep the original."""
    libraries = vendored_gfortran()
    assert len(libraries) == 2, libraries
    vendored = tmp_path / "vendored"
    vendored.mkdir()
    gfortran = vendored / (libraries[0].name.split(".so")[0] + ".so")
    shutil.copy2(libraries[0], gfortran)
    shutil.copy2(libraries[1], vendored / libraries[1].name)  # its DT_NEEDED, via $ORIGIN
    original = gfortran.read_bytes()

    report = slim.strip([tmp_path])

    assert report.kept_unstripped == [str(gfortran)]
    assert report.stripped_files == 0
    assert gfortran.read_bytes() == original
    assert slim._loads(gfortran)
    assert "kept 1 unstripped" in report.summary()


@needs_strip
def test_strip_never_touches_vendored_libs_directories(tmp_path):
    libs = tmp_path / "numpy.libs"
    libs.mkdir()
    # A library strip would shrink and that would still load: left alone all the same.
    (parser,) = copy_package("httptools", tmp_path / "copy").glob("parser/parser.*.so")
    shutil.copy2(parser, libs / "libparser-0123abcd.so")
    shutil.rmtree(tmp_path / "copy")
    before = {path.name: path.read_bytes() for path in libs.iterdir()}

    report = slim.strip([tmp_path])

    assert report.summary() == "nothing to do"
    assert {path.name: path.read_bytes() for path in libs.iterdir()} == before


def test_strip_names_the_missing_tool(tmp_path):
    with pytest.raises(SystemExit, match=r"`no-such-strip` not found.*binutils"):
        slim.strip([tmp_path], strip_tool="no-such-strip")


def test_serve_modules_are_the_ones_uvicorn_loads_for_the_api():
    from uvicorn.config import HTTP_PROTOCOLS, LIFESPAN, LOOP_FACTORIES

    from app.serving.deadlines import TimedHttpToolsProtocol

    # app/serving/server.py runs uvicorn with loop="asyncio", lifespan="on" and a subclass of the
    # httptools protocol (read deadlines).
    chosen = {LOOP_FACTORIES["asyncio"], HTTP_PROTOCOLS["httptools"], LIFESPAN["on"]}
    assert {value.split(":")[0] for value in chosen} <= set(slim.SERVE_MODULES)
    source = (REPO_ROOT / "app" / "serving" / "server.py").read_text()
    for option in ('loop="asyncio"', 'lifespan="on"'):
        assert option in source
    assert TimedHttpToolsProtocol.__mro__[1].__module__ == HTTP_PROTOCOLS["httptools"].split(":")[0]
    assert all(importlib.util.find_spec(module) for module in slim.SERVE_MODULES)


def test_warm_writes_bytecode_for_what_it_imports(tmp_path):
    write(tmp_path, "demo_warm/__init__.py").write_text("from demo_warm import part\n")
    write(tmp_path, "demo_warm/part.py").write_text("VALUE = 1\n")
    write(tmp_path, "demo_warm/unused.py").write_text("VALUE = 2\n")
    code = "import sys; from app.slim import warm; print('demo_warm.part' in warm(['demo_warm']))"
    done = subprocess.run(
        [sys.executable, "-S", "-c", code],
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join((str(tmp_path), str(REPO_ROOT))),
            "PYTHONDONTWRITEBYTECODE": "1",  # as in the image: warm turns it back on itself
        },
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "True"
    compiled = sorted(p.name.split(".")[0] for p in tmp_path.glob("demo_warm/__pycache__/*.pyc"))
    assert compiled == ["__init__", "part"]


def test_command_line_refuses_a_missing_directory(tmp_path, capsys):
    assert slim.main(["prune", str(tmp_path / "nope")]) == 2
    assert f"error: not a directory: {tmp_path / 'nope'}" in capsys.readouterr().err

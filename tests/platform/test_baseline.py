"""The training data's baseline, as the containers compute it: stage-training describes each staged
channel in Model Monitor's statistics.json and constraints.json, collect-training keeps it in the
run directory it names in report.json, and stage-serving leaves it out of the model. Checked
against numpy on the digits example's own data: scikit-learn's digits.csv.gz, which `load_digits`
reads, 64 pixels then the label a row, no header."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests.platform.conftest import Env

STATISTICS_KEYS = {"version", "dataset", "features"}
NUMERICAL_KEYS = {"common", "mean", "sum", "std_dev", "min", "max", "distribution"}
STRING_KEYS = {"common", "distinct_count", "distribution"}
MONITORING_KEYS = {
    "evaluate_constraints",
    "emit_metrics",
    "datatype_check_threshold",
    "domain_content_threshold",
    "distribution_constraints",
}
DISTRIBUTION_KEYS = {
    "perform_comparison",
    "comparison_threshold",
    "comparison_method",
    "categorical_comparison_threshold",
    "categorical_drift_method",
}


# Found without importing scikit-learn, which would cost this file a second.
DIGITS = Path(importlib.util.find_spec("sklearn").origin).parent / "datasets/data/digits.csv.gz"


def _events() -> list[dict]:
    return [
        {
            "user": {"age": None if i % 7 == 0 else i % 90, "country": ["de", "fr", "us"][i % 3]},
            "amount": i * 1.5,
            "member": i % 2 == 0,
        }
        for i in range(500)
    ]


def _channels(env: Env, data: dict[str, dict[str, bytes]]) -> str:
    for channel, files in data.items():
        for name, content in files.items():
            path = env.store / "datasets" / channel / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
    return json.dumps({channel: f"datasets/{channel}" for channel in data})


def _trained(env: Env, rid: str, channels: str, **extra: str) -> dict:
    staged = env.run("stage-training", RUN_ID=rid, MLOPS_CHANNELS=channels, **extra)
    assert staged.returncode == 0, staged.stderr
    (env.ml / "model" / "model.json").write_text('{"w": 1}')
    (env.ml / "model" / "metrics.json").write_text('{"accuracy": 0.9}')
    collected = env.collect(rid, MLOPS_TRAINING_EXIT="0")
    assert collected.returncode == 0, collected.stderr
    return json.loads((env.models / rid / "report.json").read_text())


def _files(env: Env, rid: str, channel: str) -> tuple[dict, dict]:
    directory = env.models / rid / "baseline" / channel
    statistics = json.loads((directory / "statistics.json").read_text())
    constraints = json.loads((directory / "constraints.json").read_text())
    _check_schema(statistics, constraints)
    return statistics, constraints


def _check_schema(statistics: dict, constraints: dict) -> None:
    """The keys the SageMaker pages give (model-monitor-byoc-statistics, -constraints)."""
    assert statistics.keys() >= STATISTICS_KEYS
    assert isinstance(statistics["dataset"]["item_count"], int)
    for feature in statistics["features"]:
        assert {"name", "inferred_type"} <= feature.keys()
        if feature["inferred_type"] in ("Integral", "Fractional"):
            numbers = feature["numerical_statistics"]
            assert numbers.keys() >= NUMERICAL_KEYS
            assert {"num_present", "num_missing"} == numbers["common"].keys()
            kll = numbers["distribution"]["kll"]
            for bucket in kll["buckets"]:
                assert bucket.keys() == {"lower_bound", "upper_bound", "count"}
            assert kll["sketch"]["parameters"] == {"c": 0.64, "k": 2048}
            assert all(isinstance(level, list) for level in kll["sketch"]["data"])
        else:
            strings = feature["string_statistics"]
            assert {"num_present", "num_missing"} == strings["common"].keys()
            if feature["inferred_type"] == "String":
                assert strings.keys() >= STRING_KEYS
                for bucket in strings["distribution"]["categorical"]["buckets"]:
                    assert bucket.keys() == {"value", "count"}
    assert {"version", "features", "monitoring_config"} <= constraints.keys()
    for feature in constraints["features"]:
        assert {"name", "inferred_type", "completeness"} <= feature.keys()
        assert feature["inferred_type"] in ("Integral", "Fractional", "String", "Unknown")
    assert constraints["monitoring_config"].keys() == MONITORING_KEYS
    assert constraints["monitoring_config"]["distribution_constraints"].keys() == DISTRIBUTION_KEYS


def _sketch_rank(kll: dict, value: float) -> int:
    """How many values the sketch says are at most `value` (level h weighs 2**h)."""
    return sum(
        (1 << height) * int(np.sum(np.asarray(level) <= value))
        for height, level in enumerate(kll["sketch"]["data"])
    )


def _bucket_counts(values: np.ndarray, buckets: list[dict]) -> list[int]:
    """numpy's count for each bucket, by the file's own edges: [lower, upper), the last closed."""
    counts = [
        int(np.sum((values >= b["lower_bound"]) & (values < b["upper_bound"]))) for b in buckets
    ]
    counts[-1] += int(np.sum(values == buckets[-1]["upper_bound"]))
    return counts


def test_tabular_channels_are_described_and_the_rest_skipped(env: Env) -> None:
    raw = gzip.decompress(DIGITS.read_bytes())
    digits = np.loadtxt(DIGITS, delimiter=",", dtype=np.int64)
    channels = _channels(
        env,
        {
            "train": {"digits.csv": raw},
            "events": {
                "events.jsonl.gz": gzip.compress(
                    "".join(json.dumps(e) + "\n" for e in _events()).encode()
                )
            },
            "images": {"0.png": os.urandom(4096), "1.png": os.urandom(64), "x.parquet": b"PAR1"},
        },
    )
    summary = _trained(env, "r1", channels)["baseline"]
    assert summary["directory"] == "baseline"
    assert summary["max_rows"] == 1_000_000
    train = summary["channels"]["train"]
    assert (train["format"], train["rows"], train["features"], train["header"]) == (
        "csv",
        1797,
        65,
        False,
    )
    assert (train["malformed_rows"], train["capped"], train["rank_error"]) == (0, False, 0.0)
    assert summary["channels"]["images"] == {
        "skipped": "no CSV or JSON Lines files: 3 file(s) (.parquet 1, .png 2)"
    }
    assert sorted(p.name for p in (env.models / "r1" / "baseline").iterdir()) == ["events", "train"]
    assert not list(env.models.glob(".r1.baseline*")), "the staged baseline was moved, not left"

    statistics, constraints = _files(env, "r1", "train")
    assert statistics["dataset"] == {"item_count": 1797}
    # By position, as a request's 64 pixels line up with them; the label (last) is _c64.
    assert [f["name"] for f in statistics["features"]] == [f"_c{i}" for i in range(65)]
    for column, feature, constraint in zip(
        digits.T, statistics["features"], constraints["features"], strict=True
    ):
        assert feature["inferred_type"] == constraint["inferred_type"] == "Integral"
        numbers = feature["numerical_statistics"]
        assert numbers["common"] == {"num_present": 1797, "num_missing": 0}
        assert numbers["sum"] == column.sum()
        assert numbers["mean"] == pytest.approx(column.mean(), rel=1e-12)
        assert numbers["std_dev"] == pytest.approx(column.std(), rel=1e-9, abs=1e-12)
        assert (numbers["min"], numbers["max"]) == (column.min(), column.max())
        kll = numbers["distribution"]["kll"]
        # Fewer values than k: nothing compacted, the sketch holds them all.
        held = np.concatenate([np.asarray(level) for level in kll["sketch"]["data"]])
        assert np.array_equal(np.sort(held), np.sort(column))
        for q in (0.1, 0.25, 0.5, 0.75, 0.9):
            quantile = np.quantile(column, q, method="inverted_cdf")
            assert _sketch_rank(kll, quantile) == np.sum(column <= quantile)
        if column.min() == column.max():
            assert kll["buckets"] == [
                {"lower_bound": column.min(), "upper_bound": column.max(), "count": 1797}
            ]
        else:
            assert len(kll["buckets"]) == 10
            counts = [b["count"] for b in kll["buckets"]]
            assert counts == _bucket_counts(column, kll["buckets"])
        assert constraint["completeness"] == 1.0
        assert constraint["num_constraints"] == {"is_non_negative": True}
    assert statistics["features"][64]["numerical_statistics"]["max"] == 9

    statistics, constraints = _files(env, "r1", "events")
    events = _events()
    assert [f["name"] for f in statistics["features"]] == [
        "user.age",
        "user.country",
        "amount",
        "member",
    ]
    by_name = {f["name"]: f for f in statistics["features"]}
    ages = np.array([e["user"]["age"] for e in events if e["user"]["age"] is not None])
    age = by_name["user.age"]["numerical_statistics"]
    assert by_name["user.age"]["inferred_type"] == "Integral"
    assert age["common"] == {"num_present": len(ages), "num_missing": len(events) - len(ages)}
    assert age["mean"] == pytest.approx(ages.mean(), rel=1e-12)
    assert age["std_dev"] == pytest.approx(ages.std(), rel=1e-9)
    amounts = np.array([e["amount"] for e in events])
    assert by_name["amount"]["inferred_type"] == "Fractional"
    assert by_name["amount"]["numerical_statistics"]["sum"] == amounts.sum()
    for name, expected in (
        ("user.country", Counter(e["user"]["country"] for e in events)),
        ("member", Counter(json.dumps(e["member"]) for e in events)),
    ):
        strings = by_name[name]["string_statistics"]
        assert by_name[name]["inferred_type"] == "String"
        assert strings["distinct_count"] == len(expected)
        buckets = strings["distribution"]["categorical"]["buckets"]
        assert {b["value"]: b["count"] for b in buckets} == expected
    completeness = {f["name"]: f["completeness"] for f in constraints["features"]}
    assert completeness["user.age"] == len(ages) / len(events)
    domains = {f["name"]: f.get("string_constraints") for f in constraints["features"]}
    assert domains["user.country"] == {"domains": ["de", "fr", "us"]}


def test_a_large_column_is_sketched_within_its_bound(env: Env) -> None:
    values = np.random.default_rng(7).lognormal(size=60_000)
    text = "value,weight\n" + "".join(f"{float(v)!r},{i % 5}\n" for i, v in enumerate(values))
    channels = _channels(env, {"train": {"big.csv": text.encode()}})
    summary = _trained(env, "r1", channels)["baseline"]["channels"]["train"]
    assert (summary["header"], summary["rows"]) == (True, 60_000)
    bound = summary["rank_error"]
    assert 0 < bound < 0.005
    statistics, _ = _files(env, "r1", "train")
    feature = statistics["features"][0]
    assert (feature["name"], feature["inferred_type"]) == ("value", "Fractional")
    numbers = feature["numerical_statistics"]
    assert numbers["mean"] == pytest.approx(values.mean(), rel=1e-12)
    assert numbers["std_dev"] == pytest.approx(values.std(), rel=1e-9)
    kll = numbers["distribution"]["kll"]
    assert len(kll["sketch"]["data"]) > 1, "compacted: more values than k"
    for q in np.linspace(0.01, 0.99, 25):
        quantile = np.quantile(values, q)
        error = abs(_sketch_rank(kll, quantile) - np.sum(values <= quantile)) / len(values)
        assert error <= bound
    counts = [b["count"] for b in kll["buckets"]]
    assert sum(counts) == len(values)
    for counted, exact in zip(counts, _bucket_counts(values, kll["buckets"]), strict=True):
        assert abs(counted - exact) <= 2 * bound * len(values)


def test_malformed_rows_are_counted_and_never_fail_the_run(env: Env) -> None:
    rows = [b"1,2,3\n"] * 10 + [
        b"4,5\n",  # one field short
        b"\xff\xfe,1,2\n",  # not UTF-8
        b"9," * (1 << 20) + b"9\n",  # a 2 MiB line
        b'"' + b"x" * 200_000 + b'",1,2\n',  # a field past the CSV reader's limit
        b"",
    ]
    lines = [b'{"a": 1}\n'] * 5 + [
        b"[1, 2]\n",
        b"{broken\n",
        b"\n",
        b'"text"\n',
        b"[" * 5000 + b"\n",
    ]
    channels = _channels(
        env,
        {
            "noisy": {"data.csv": b"".join(rows) + b"6,7,8\n"},
            "lines": {"a.ndjson": b"".join(lines)},
            "binary": {"blob.csv": os.urandom(1 << 16).replace(b"\n", b"")},
        },
    )
    summary = _trained(env, "r1", channels)["baseline"]["channels"]
    noisy = summary["noisy"]
    assert (noisy["rows"], noisy["malformed_rows"], noisy["features"]) == (11, 4, 3)
    assert (summary["lines"]["rows"], summary["lines"]["malformed_rows"]) == (5, 4)
    assert summary["binary"]["skipped"].startswith("no readable rows")
    statistics, _ = _files(env, "r1", "noisy")
    assert statistics["features"][0]["numerical_statistics"]["sum"] == 16


def test_the_row_limit_is_recorded(env: Env) -> None:
    channels = _channels(env, {"train": {"a.csv": b"".join(b"%d\n" % i for i in range(10))}})
    summary = _trained(env, "r1", channels, MLOPS_BASELINE_MAX_ROWS="4")["baseline"]
    assert summary["max_rows"] == 4
    assert (summary["channels"]["train"]["rows"], summary["channels"]["train"]["capped"]) == (
        4,
        True,
    )
    statistics, _ = _files(env, "r1", "train")
    assert statistics["features"][0]["numerical_statistics"]["sum"] == 0 + 1 + 2 + 3

    refused = _trained(env, "r2", channels, MLOPS_BASELINE_MAX_ROWS="lots")["baseline"]
    assert refused["directory"] is None
    assert refused["problem"].startswith("MLOPS_BASELINE_MAX_ROWS='lots' must be a positive")


def test_the_baseline_stays_out_of_the_served_model(env: Env) -> None:
    channels = _channels(env, {"train": {"a.csv": b"1,2\n3,4\n"}})
    _trained(env, "r1", channels)
    assert env.gate("r1").returncode == 0
    staged = env.run("stage-serving")
    assert staged.returncode == 0, staged.stderr
    assert (env.models / "r1" / "baseline" / "train" / "statistics.json").is_file()
    assert sorted(p.name for p in (env.ml / "model").iterdir()) == ["metrics.json", "model.json"]


def test_a_failed_run_keeps_no_baseline(env: Env) -> None:
    channels = _channels(env, {"train": {"a.csv": b"1,2\n"}})
    assert env.run("stage-training", RUN_ID="r1", MLOPS_CHANNELS=channels).returncode == 0
    assert (env.models / ".r1.baseline" / "baseline" / "train").is_dir()
    (env.ml / "output" / "failure").write_text("out of memory")
    assert env.collect("r1", MLOPS_TRAINING_EXIT="1").returncode == 1
    report = json.loads((env.models / "r1" / "report.json").read_text())
    assert (report["status"], report["baseline"]) == ("failed", None)
    assert sorted(p.name for p in env.models.iterdir()) == ["r1"]
    assert sorted(p.name for p in (env.models / "r1").iterdir()) == ["report.json"]


def test_a_model_may_not_take_the_baselines_name(env: Env) -> None:
    env.train("r1", {"model.json": b"{}", "baseline/statistics.json": b"{}"})
    result = env.collect("r1", MLOPS_TRAINING_EXIT="0")
    assert result.returncode == 1
    assert "model/baseline: a name the platform keeps for its own records" in result.stderr


def test_without_a_staged_baseline_the_run_still_collects(env: Env) -> None:
    env.train("r1", {"model.json": b"{}"})
    (env.models / ".r1.baseline" / "summary.json").unlink()
    result = env.collect("r1", MLOPS_TRAINING_EXIT="0")
    assert result.returncode == 0, result.stderr
    report = json.loads((env.models / "r1" / "report.json").read_text())
    assert report["baseline"] == {
        "directory": None,
        "problem": "models/.r1.baseline/ holds no summary.json",
    }

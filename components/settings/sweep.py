"""`mlops:workload.training.sweep`: a grid or random search over named hyperparameters.

The trials are planned here, once, when the program runs (`pulumi up`, `preflight.plan`): the
state machine's definition carries the list (documents/sweep.py), so every execution of the same
config runs the same trials, and a random search draws them from its `seed`, never from the
clock. Each trial's hyperparameters are the stack's `training.hyperparameters` with the trial's
values over them.

    sweep:
      strategy: random               # grid (every combination of the lists) | random
      parameters:
        max_depth: [2, 4, 6]         # a list: the values to try (grid and random)
        eta: {min: 0.05, max: 0.5, scale: log}    # a range: random only
        num_round: {min: 20, max: 200, type: int}
      max_trials: 6                  # random: how many to draw; grid: a ceiling (default: all)
      max_parallel: 2                # trials training at once (the Map's MaxConcurrency)
      tolerated_failures: 1          # failed trials the sweep survives (ToleratedFailureCount)
      seed: 7                        # random only; the same seed draws the same trials

A random draw is made parameter by parameter in name order, so the order the keys are written in
changes nothing; a drawn float is kept to 6 significant digits (what reaches the image is its
text in hyperparameters.json), an integer range draws whole numbers, both ends included.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from components.settings._section import Section, as_map, fail
from components.settings.secrets import no_secret

KEY = "workload.training.sweep"
MAX_TRIALS = 100
"""Each trial is a training task, listed in the state machine's definition and in the gate's task
definition: a search past 100 trials is a tuning service's job, not a pipeline's."""
MAX_VALUES = 100
PARAMETER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
DRAW_ATTEMPTS = 50
"""Random draws per trial before a search with too few distinct combinations is refused."""


class Strategy(StrEnum):
    GRID = "grid"
    RANDOM = "random"


class Scale(StrEnum):
    LINEAR = "linear"
    LOG = "log"


class Kind(StrEnum):
    FLOAT = "float"
    INT = "int"


@dataclass(frozen=True)
class Range:
    """A range a random search draws from: uniform, or log-uniform (`scale: log`)."""

    min: float = 0.0
    max: float = 0.0
    scale: Scale = Scale.LINEAR
    type: Kind = Kind.FLOAT


@dataclass(frozen=True)
class SweepSpec:
    """The section's keys, as written."""

    strategy: Strategy = Strategy.GRID
    parameters: Mapping[str, tuple[Any, ...] | Range] = field(default_factory=dict)
    max_trials: int | None = None
    max_parallel: int = 1
    tolerated_failures: int = 0
    seed: int | None = None


@dataclass(frozen=True)
class Trial:
    id: str
    """`t01`, `t02`, ...: the trial's run is `<the execution's run id>-<id>`."""
    values: Mapping[str, Any]
    """The swept hyperparameters' values of this trial."""
    hyperparameters: Mapping[str, Any]
    """What it trains with: the stack's hyperparameters with `values` over them."""


@dataclass(frozen=True)
class Sweep:
    """A parsed sweep and its planned trials."""

    spec: SweepSpec
    trials: tuple[Trial, ...]

    @property
    def max_parallel(self) -> int:
        return self.spec.max_parallel

    @property
    def tolerated_failures(self) -> int:
        return self.spec.tolerated_failures


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _values(key: str, raw: list[Any] | tuple[Any, ...]) -> tuple[Any, ...]:
    if not 1 <= len(raw) <= MAX_VALUES:
        raise fail(key, list(raw), f"a list of 1 to {MAX_VALUES} values to try, e.g. [2, 4, 6]")
    seen: set[str] = set()
    for value in raw:
        if value is None or isinstance(value, Mapping | list | tuple):
            raise fail(key, value, "each value is a string, a number or true/false")
        if isinstance(value, float) and not math.isfinite(value):
            raise fail(key, value, "a number must be finite")
        no_secret(key, str(value))
        text = json.dumps(value)
        if text in seen:
            raise fail(key, list(raw), f"{text} is listed twice: each value once")
        seen.add(text)
    return tuple(raw)


def _range(key: str, raw: Any) -> Range:
    s = Section(key, raw, Range)
    for end in ("min", "max"):
        if not _number(s.raw.get(end)):
            raise fail(s.key(end), s.raw.get(end), "a range needs a finite number at each end")
    low, high = s.raw["min"], s.raw["max"]
    if not low < high:
        raise fail(s.key("max"), high, f"it must be above min ({low})")
    scale = s.enum("scale", Scale)
    kind = s.enum("type", Kind)
    if scale is Scale.LOG and low <= 0:
        raise fail(s.key("min"), low, "a log scale needs min above 0")
    if kind is Kind.INT and not all(float(v).is_integer() for v in (low, high)):
        raise fail(key, dict(s.raw), "an int range needs whole numbers at both ends")
    return Range(min=low, max=high, scale=scale, type=kind)


def _parameters(key: str, raw: Any, strategy: Strategy) -> dict[str, tuple[Any, ...] | Range]:
    found = as_map(key, raw)
    if not found:
        raise fail(key, raw, "name at least one hyperparameter and the values to try")
    parameters: dict[str, tuple[Any, ...] | Range] = {}
    for name, value in found.items():
        where = f"{key}.{name}"
        if not isinstance(name, str) or not PARAMETER_NAME.fullmatch(name):
            raise fail(where, name, "a hyperparameter name: letters, digits, _ . -")
        if isinstance(value, list | tuple):
            parameters[name] = _values(where, value)
        elif isinstance(value, Mapping) and strategy is Strategy.RANDOM:
            parameters[name] = _range(where, value)
        elif isinstance(value, Mapping):
            raise fail(
                where,
                dict(value),
                "a grid tries listed values: give a list, e.g. [0.05, 0.1, 0.3], or use "
                "strategy: random to draw from a range",
            )
        else:
            raise fail(
                where, value, "a list of values, e.g. [2, 4, 6], or (random) {min, max, scale}"
            )
    return parameters


def _draw(rng: random.Random, spec: tuple[Any, ...] | Range) -> Any:
    if isinstance(spec, tuple):
        return spec[rng.randrange(len(spec))]
    if spec.type is Kind.INT:
        low, high = int(spec.min), int(spec.max)
        if spec.scale is Scale.LOG:
            # Log-uniform over [low, high + 1), floored: each whole number k is drawn with
            # probability log((k + 1) / k) / log((high + 1) / low).
            drawn = math.exp(rng.uniform(math.log(low), math.log(high + 1)))
            return min(high, max(low, math.floor(drawn)))
        return rng.randint(low, high)
    if spec.scale is Scale.LOG:
        drawn = math.exp(rng.uniform(math.log(spec.min), math.log(spec.max)))
    else:
        drawn = rng.uniform(spec.min, spec.max)
    return min(spec.max, max(spec.min, float(f"{drawn:.6g}")))


def _combinations(spec: SweepSpec) -> list[dict[str, Any]]:
    names = sorted(spec.parameters)
    if spec.strategy is Strategy.GRID:
        lists = [spec.parameters[name] for name in names]
        return [dict(zip(names, values, strict=True)) for values in itertools.product(*lists)]
    assert spec.max_trials is not None  # the parser requires it for random
    rng = random.Random(spec.seed or 0)
    drawn: list[dict[str, Any]] = []
    seen: set[str] = set()
    for _ in range(spec.max_trials * DRAW_ATTEMPTS):
        values = {name: _draw(rng, spec.parameters[name]) for name in names}
        text = json.dumps(values, sort_keys=True)
        if text not in seen:
            seen.add(text)
            drawn.append(values)
            if len(drawn) == spec.max_trials:
                break
    return drawn


def plan_trials(spec: SweepSpec, base: Mapping[str, Any]) -> tuple[Trial, ...]:
    """The trials, numbered from t01: the grid's combinations in name order, or the random
    draws in the order they were drawn."""
    combinations = _combinations(spec)
    width = max(2, len(str(len(combinations))))
    return tuple(
        Trial(
            id=f"t{number:0{width}d}",
            values=values,
            hyperparameters={**base, **values},
        )
        for number, values in enumerate(combinations, start=1)
    )


def parse_sweep(raw: Any, base: Mapping[str, Any]) -> Sweep | None:
    """`workload.training.sweep` (None or absent: no sweep), with `base` the stack's
    `training.hyperparameters`."""
    if raw is None:
        return None
    s = Section(KEY, raw, SweepSpec)
    strategy = s.enum("strategy", Strategy)
    parameters = _parameters(s.key("parameters"), s.raw.get("parameters"), strategy)
    max_trials = s.int("max_trials", lo=1, hi=MAX_TRIALS) if s.has("max_trials") else None
    seed = s.int("seed", lo=0, hi=2**31 - 1) if s.has("seed") else None
    if strategy is Strategy.GRID:
        if seed is not None:
            raise fail(s.key("seed"), seed, "a grid draws nothing: seed is for strategy: random")
        size = math.prod(len(values) for values in parameters.values())  # type: ignore[arg-type]
        ceiling = max_trials if max_trials is not None else MAX_TRIALS
        if size > ceiling:
            what = f"max_trials is {max_trials}" if max_trials else f"at most {MAX_TRIALS} trials"
            raise fail(
                s.key("parameters"),
                {k: list(v) for k, v in parameters.items()},  # type: ignore[arg-type]
                f"the grid has {size} combinations and {what}: shorten the lists, raise "
                "max_trials, or use strategy: random",
            )
    elif max_trials is None:
        raise fail(s.key("max_trials"), None, f"a random search draws max_trials (1-{MAX_TRIALS})")
    spec = SweepSpec(
        strategy=strategy,
        parameters=parameters,
        max_trials=max_trials,
        max_parallel=s.int("max_parallel", lo=1, hi=MAX_TRIALS),
        tolerated_failures=s.int("tolerated_failures", lo=0, hi=MAX_TRIALS),
        seed=seed,
    )
    trials = plan_trials(spec, base)
    if len(trials) < (max_trials or 0):
        raise fail(
            s.key("max_trials"),
            max_trials,
            f"the lists allow only {len(trials)} distinct combinations: lower max_trials, or "
            "use strategy: grid to try each",
        )
    if spec.max_parallel > len(trials):
        raise fail(
            s.key("max_parallel"),
            spec.max_parallel,
            f"at most the number of trials ({len(trials)})",
        )
    if spec.tolerated_failures >= len(trials):
        raise fail(
            s.key("tolerated_failures"),
            spec.tolerated_failures,
            f"fewer than the number of trials ({len(trials)}): at least one must train",
        )
    return Sweep(spec=spec, trials=trials)


def check_sweep(sweep: Sweep | None, *, sagemaker: bool, own_gate: bool, objective: bool) -> None:
    """What a sweep needs of the rest of the workload: hyperparameters that reach the image (the
    `sagemaker` contract stages hyperparameters.json; a `platform` image runs its own commands
    and reads none, so every trial would train the same model) and an objective the platform picks
    the best trial by and gates it on (not the workload's own gate step, which decides on one run
    it finds itself, nor every-trained-run, which has nothing to compare)."""
    if sweep is None:
        return
    shown = {"strategy": sweep.spec.strategy.value, "trials": len(sweep.trials)}
    if not sagemaker:
        raise fail(
            KEY,
            shown,
            "a sweep varies hyperparameters, which only the sagemaker contract hands the image "
            "(hyperparameters.json); a platform-contract image runs its own commands and reads "
            "none, so every trial would train the same model",
        )
    if own_gate or not objective:
        raise fail(
            KEY,
            shown,
            "the platform picks the best trial by workload.objective and gates it: declare the "
            "objective, with no gate step of the workload's own and promotion: objective",
        )

"""Enough of the Amazon States Language to walk the training state machine on this machine.

`python -m preflight.run_local STACK --task pipeline` renders each step's RunTask overrides from
the state machine the program declares, so the environment a local step gets (`RUN_ID`,
`RUN_DATE`, the trigger) is the one Step Functions would pass. This module evaluates the parts of
ASL (JSONPath flavour) that walk needs:

- paths `$`, `$.a.b`, `$.a[0]` and the context object `$$.Execution.Name|StartTime|Id`;
- `Parameters` with `key.$` fields, `Result`, `InputPath`, `ResultPath`, `OutputPath`;
- the intrinsic functions `States.Format`, `States.StringSplit`, `States.ArrayGetItem`,
  `States.ArrayLength`, `States.JsonMerge`, `States.JsonToString`, `States.StringToJson`,
  `States.UUID`, `States.MathAdd` (Step Functions Developer Guide, "Intrinsic functions");
- `Choice` rules with `Variable`, `StringEquals`, `StringMatches`, `NumericEquals`,
  `NumericGreaterThanEquals`, `NumericLessThan`, `BooleanEquals`, `IsPresent`, `And`, `Or`,
  `Not`;
- a Task's `ResultSelector`;
- the context object's `$$.Map.Item.Index|Value` (a Map's ItemSelector) and `$$.Task.Token` (a
  `.waitForTaskToken` task), which the walk puts in the context it evaluates with.

`check_definition` checks a whole definition's shape (state types and their fields, Next/End,
transitions, the Map's fields and limits, unique state names) as Step Functions validates it at
CreateStateMachine, so a stack's definition is checked before any deploy.

Anything else raises `AslError` naming it: a definition this walk cannot follow fails loudly
instead of running something Step Functions would not.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from typing import Any


class AslError(ValueError):
    """The definition uses something this evaluator does not implement, or a path is missing."""


_STEP = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")


def read_path(path: str, data: Any, context: Mapping[str, Any]) -> Any:
    """The value at a JSONPath reference path (`$.a.b[0]`, or `$$.` for the context object)."""
    if path.startswith("$$"):
        root, rest = context, path[2:]
    elif path.startswith("$"):
        root, rest = data, path[1:]
    else:
        raise AslError(f"{path!r} is not a path (it must start with $)")
    value = root
    position = 0
    while position < len(rest):
        match = _STEP.match(rest, position)
        if not match:
            raise AslError(f"path {path!r}: cannot read {rest[position:]!r}")
        key, index = match.groups()
        try:
            value = value[int(index)] if index is not None else value[key]
        except (KeyError, IndexError, TypeError) as exc:
            raise AslError(f"path {path!r} does not exist in the state input") from exc
        position = match.end()
    return value


def _write_path(path: str, data: Any, value: Any) -> Any:
    if path == "$":
        return value
    if not path.startswith("$."):
        raise AslError(f"ResultPath {path!r}: only $ and $.field paths are supported")
    result = json.loads(json.dumps(data)) if isinstance(data, dict) else {}
    target = result
    keys = path[2:].split(".")
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    target[keys[-1]] = value
    return result


# --- intrinsic functions ------------------------------------------------------------------------


def _split_arguments(text: str) -> list[str]:
    """Split `a, 'b, c', States.F(x, y)` at top-level commas."""
    arguments, depth, quoted, start, i = [], 0, False, 0, 0
    while i < len(text):
        char = text[i]
        if quoted:
            if char == "\\":
                i += 1
            elif char == "'":
                quoted = False
        elif char == "'":
            quoted = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            arguments.append(text[start:i].strip())
            start = i + 1
        i += 1
    if text.strip():
        arguments.append(text[start:].strip())
    return arguments


def _unescape(literal: str) -> str:
    return re.sub(r"\\(.)", r"\1", literal)


def _format(template: str, values: list[Any]) -> str:
    pieces = re.split(r"(?<!\\)\{\}", template)
    if len(pieces) - 1 != len(values):
        raise AslError(f"States.Format: {len(pieces) - 1} placeholders for {len(values)} arguments")
    out = pieces[0]
    for value, piece in zip(values, pieces[1:], strict=True):
        out += (value if isinstance(value, str) else json.dumps(value)) + piece
    return _unescape(out)


def _call(name: str, args: list[Any]) -> Any:
    if name == "States.Format":
        return _format(args[0], args[1:])
    if name == "States.StringSplit":
        # Each character of the second argument is a delimiter; no empty items.
        pattern = "[" + re.escape(args[1]) + "]"
        return [item for item in re.split(pattern, args[0]) if item]
    if name == "States.ArrayGetItem":
        return args[0][int(args[1])]
    if name == "States.ArrayLength":
        return len(args[0])
    if name == "States.JsonMerge":
        if args[2] is not False:
            raise AslError("States.JsonMerge: only shallow merges (false) exist")
        return {**args[0], **args[1]}
    if name == "States.JsonToString":
        return json.dumps(args[0], separators=(",", ":"))
    if name == "States.StringToJson":
        return json.loads(args[0])
    if name == "States.UUID":
        return str(uuid.uuid4())
    if name == "States.MathAdd":
        return args[0] + args[1]
    raise AslError(f"intrinsic function {name} is not implemented here")


def evaluate(expression: str, data: Any, context: Mapping[str, Any]) -> Any:
    """A `.$` field's value: a path or an intrinsic function call."""
    expression = expression.strip()
    if expression.startswith("$"):
        return read_path(expression, data, context)
    match = re.fullmatch(r"(States\.\w+)\((.*)\)", expression, re.DOTALL)
    if not match:
        raise AslError(f"{expression!r} is neither a path nor an intrinsic function")
    args: list[Any] = []
    for argument in _split_arguments(match.group(2)):
        if argument.startswith("'") and argument.endswith("'"):
            args.append(argument[1:-1])  # escapes are resolved by the function (Format)
        elif argument.startswith(("$", "States.")):
            args.append(evaluate(argument, data, context))
        else:
            try:
                args.append(json.loads(argument))
            except json.JSONDecodeError as exc:
                raise AslError(f"argument {argument!r} of {match.group(1)}") from exc
    return _call(match.group(1), args)


def render(template: Any, data: Any, context: Mapping[str, Any]) -> Any:
    """`Parameters` (or a nested part of it) with every `key.$` field evaluated."""
    if isinstance(template, dict):
        rendered = {}
        for key, value in template.items():
            if key.endswith(".$"):
                rendered[key[:-2]] = evaluate(value, data, context)
            else:
                rendered[key] = render(value, data, context)
        return rendered
    if isinstance(template, list):
        return [render(item, data, context) for item in template]
    return template


# --- states -------------------------------------------------------------------------------------


def state_input(state: Mapping[str, Any], data: Any, context: Mapping[str, Any]) -> Any:
    """The effective input of a state: `InputPath`, then `Parameters`."""
    if "InputPath" in state:
        data = {} if state["InputPath"] is None else read_path(state["InputPath"], data, context)
    if "Parameters" in state:
        data = render(state["Parameters"], data, context)
    return data


def state_output(
    state: Mapping[str, Any], raw_input: Any, result: Any, context: Mapping[str, Any]
) -> Any:
    """What a state passes on: its result shaped by `ResultSelector`, placed by `ResultPath`,
    then `OutputPath`."""
    if "ResultSelector" in state and result is not None:
        result = render(state["ResultSelector"], result, context)
    result_path = state.get("ResultPath", "$")
    output = raw_input if result_path is None else _write_path(result_path, raw_input, result)
    if "OutputPath" in state:
        output = {} if state["OutputPath"] is None else read_path(state["OutputPath"], output, {})
    return output


def _string_matches(value: Any, pattern: str) -> bool:
    """ASL `StringMatches`: `*` matches any run of characters (none included); `\\*` is a
    literal asterisk and `\\\\` a backslash (Step Functions Developer Guide, "Choice workflow
    state": "StringMatches")."""
    if not isinstance(value, str):
        return False
    regex, index = [], 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            regex.append(re.escape(pattern[index + 1]))
            index += 2
            continue
        regex.append(".*" if char == "*" else re.escape(char))
        index += 1
    return re.fullmatch("".join(regex), value, flags=re.DOTALL) is not None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_COMPARISONS = {
    "StringEquals": lambda a, b: isinstance(a, str) and a == b,
    "StringMatches": _string_matches,
    "NumericEquals": lambda a, b: _number(a) and a == b,
    "NumericGreaterThanEquals": lambda a, b: _number(a) and a >= b,
    "NumericLessThan": lambda a, b: _number(a) and a < b,
    "BooleanEquals": lambda a, b: isinstance(a, bool) and a == b,
}


def choice_matches(rule: Mapping[str, Any], data: Any, context: Mapping[str, Any]) -> bool:
    if "And" in rule:
        return all(choice_matches(r, data, context) for r in rule["And"])
    if "Or" in rule:
        return any(choice_matches(r, data, context) for r in rule["Or"])
    if "Not" in rule:
        return not choice_matches(rule["Not"], data, context)
    variable = rule.get("Variable")
    if variable is None:
        raise AslError(f"Choice rule without Variable: {rule}")
    try:
        value = read_path(variable, data, context)
        present = True
    except AslError:
        value, present = None, False
    if "IsPresent" in rule:
        return present == rule["IsPresent"]
    for name, compare in _COMPARISONS.items():
        if name in rule:
            return present and compare(value, rule[name])
    raise AslError(f"Choice rule {rule}: no supported comparison")


# --- the definition's shape ----------------------------------------------------------------------

_COMMON = {"Type", "Comment", "InputPath", "OutputPath"}
_FLOW = {"Next", "End"}
_RESULT = {"ResultPath", "ResultSelector", "Retry", "Catch"}
STATE_FIELDS: dict[str, frozenset[str]] = {
    "Pass": frozenset(_COMMON | _FLOW | {"Parameters", "Result", "ResultPath"}),
    "Task": frozenset(
        _COMMON
        | _FLOW
        | _RESULT
        | {"Resource", "Parameters", "Credentials"}
        | {"TimeoutSeconds", "TimeoutSecondsPath", "HeartbeatSeconds", "HeartbeatSecondsPath"}
    ),
    "Choice": frozenset(_COMMON | {"Choices", "Default"}),
    "Wait": frozenset(_COMMON | _FLOW | {"Seconds", "Timestamp", "SecondsPath", "TimestampPath"}),
    "Succeed": frozenset(_COMMON),
    "Fail": frozenset({"Type", "Comment", "Error", "Cause", "ErrorPath", "CausePath"}),
    "Parallel": frozenset(_COMMON | _FLOW | _RESULT | {"Branches", "Parameters"}),
    "Map": frozenset(
        _COMMON
        | _FLOW
        | _RESULT
        | {"ItemProcessor", "Iterator", "ItemsPath", "ItemSelector", "Parameters"}
        | {"ItemReader", "ItemBatcher", "ResultWriter", "Label"}
        | {"MaxConcurrency", "MaxConcurrencyPath"}
        | {"ToleratedFailureCount", "ToleratedFailureCountPath"}
        | {"ToleratedFailurePercentage", "ToleratedFailurePercentagePath"}
    ),
}
"""The fields of each state type in the JSONPath flavour of the States Language
(https://states-language.net/spec.html, "State Types"; Step Functions Developer Guide, one page a
state: state-pass.html, state-task.html, state-choice.html, state-wait.html, state-succeed.html,
state-fail.html, state-parallel.html; the Map's: state-map-inline.html and
state-map-distributed.html ("Distributed Map state fields"), input-output-itemspath.html,
input-output-itemselector.html, maprun-fail-threshold.html)."""
DISTRIBUTED_ONLY = frozenset(
    {
        "ItemReader",
        "ItemBatcher",
        "ResultWriter",
        "Label",
        "ToleratedFailureCount",
        "ToleratedFailureCountPath",
        "ToleratedFailurePercentage",
        "ToleratedFailurePercentagePath",
    }
)
"""Map fields of the Distributed mode only (state-map-distributed.html; an Inline Map has no
failure threshold: state-map-inline.html lists none of them)."""
TASK_TOKEN = "$$.Task.Token"


def _whole(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _check_map(where: str, state: Mapping[str, Any], problems: list[str]) -> None:
    processor = state.get("ItemProcessor", state.get("Iterator"))
    if not isinstance(processor, Mapping):
        problems.append(f"{where}: a Map needs its ItemProcessor")
        return
    config = processor.get("ProcessorConfig") or {}
    mode = config.get("Mode", "INLINE")
    if mode not in ("INLINE", "DISTRIBUTED"):
        problems.append(f"{where}: ProcessorConfig.Mode {mode!r}: INLINE or DISTRIBUTED")
    if mode == "DISTRIBUTED" and config.get("ExecutionType") not in ("STANDARD", "EXPRESS"):
        problems.append(f"{where}: a Distributed Map needs ExecutionType STANDARD or EXPRESS")
    if mode == "INLINE":
        problems += [
            f"{where}: {name} exists only in Distributed mode"
            for name in sorted(DISTRIBUTED_ONLY & set(state))
        ]
    # The ranges of botocore's Step Functions model for the same Map Run settings
    # (UpdateMapRun: MaxConcurrency, ToleratedFailureCount >= 0; ToleratedFailurePercentage
    # 0-100).
    if "MaxConcurrency" in state and not _whole(state["MaxConcurrency"], 0):
        problems.append(f"{where}: MaxConcurrency must be a whole number >= 0")
    if "ToleratedFailureCount" in state and not _whole(state["ToleratedFailureCount"], 0):
        problems.append(f"{where}: ToleratedFailureCount must be a whole number >= 0")
    percentage = state.get("ToleratedFailurePercentage", 0)
    if isinstance(percentage, bool) or not isinstance(percentage, int | float):
        problems.append(f"{where}: ToleratedFailurePercentage must be a number")
    elif not 0 <= percentage <= 100:
        problems.append(f"{where}: ToleratedFailurePercentage must be 0 to 100")
    if "ItemsPath" in state and not str(state["ItemsPath"]).startswith("$"):
        problems.append(f"{where}: ItemsPath must be a reference path")
    _check_machine(processor, f"{where}.ItemProcessor", problems)


def _check_machine(machine: Mapping[str, Any], where: str, problems: list[str]) -> None:
    """One scope's states (the machine's, a Map's ItemProcessor, a Parallel branch): every
    transition names a state of the same scope."""
    states = machine.get("States")
    if not isinstance(states, Mapping) or machine.get("StartAt") not in states:
        problems.append(f"{where}: StartAt must name one of its States")
        return
    for name, state in states.items():
        here = f"{where}.{name}"
        kind = state.get("Type")
        if kind not in STATE_FIELDS:
            problems.append(f"{here}: Type {kind!r} is not a state type")
            continue
        problems += [
            f"{here}: {field} is not a field of a {kind} state"
            for field in sorted(set(state) - STATE_FIELDS[kind])
        ]
        if "End" in STATE_FIELDS[kind] and ("Next" in state) == bool(state.get("End")):
            problems.append(f"{here}: exactly one of Next and End")
        targets = [state.get("Next"), state.get("Default")]
        targets += [c.get("Next") for c in state.get("Choices", []) + state.get("Catch", [])]
        problems += [
            f"{here}: {target!r} is not a state here"
            for target in targets
            if target is not None and target not in states
        ]
        resource = str(state.get("Resource", ""))
        if resource.endswith(".waitForTaskToken") and TASK_TOKEN not in json.dumps(
            state.get("Parameters")
        ):
            problems.append(f"{here}: a .waitForTaskToken task must pass {TASK_TOKEN}")
        if kind == "Map":
            _check_map(here, state, problems)
        for index, branch in enumerate(state.get("Branches", [])):
            _check_machine(branch, f"{here}.Branches[{index}]", problems)


def check_definition(definition: Mapping[str, Any]) -> list[str]:
    """What in a definition the States Language does not allow, one line each (empty: none):
    unknown state types and fields, Next/End, transitions to no state, Map fields and limits,
    state names used twice anywhere in the machine, a callback task that passes no token."""
    problems: list[str] = []
    _check_machine(definition, "$", problems)
    every: list[str] = []

    def collect(machine: Mapping[str, Any]) -> None:
        for name, state in (machine.get("States") or {}).items():
            every.append(name)
            inner = state.get("ItemProcessor", state.get("Iterator"))
            for sub in [inner, *state.get("Branches", [])]:
                if isinstance(sub, Mapping):
                    collect(sub)

    collect(definition)
    twice = sorted(name for name in set(every) if every.count(name) > 1)
    problems += [f"state name {name!r} is used twice" for name in twice]
    return problems

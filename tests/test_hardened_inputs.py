"""Hardened inputs, property-based: every bad value on the command line or in a sweep file
ends in one line on stderr starting ``replaymask: error:``, exit status 2, no traceback and
nothing written (no output folder, no results database).

The core settings are specified here, by hand; each method's own settings are taken from
its declaration (``METHOD["settings"]`` in its file), so that a new method's flags and
sweep keys are tested without editing this file.

Nothing here trains or loads data: a module fixture replaces ``load_benchmark``, ``train``
and ``run_sweep`` by a function raising ``InputAccepted``, so an input that wrongly gets
past the checks fails its test at once, and the positive controls show that valid inputs
do reach that point (the strategies of bad inputs are not vacuous).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import sqlite3
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from replaymask import cli
from replaymask.config import (
    MAX_COUNT,
    MAX_VALIDATION_FRACTION,
    PRECISIONS,
    SEED_LIMIT,
    method_settings,
    methods_using,
    resolve,
)
from replaymask.core.methods import declaration, method_names
from replaymask.data.protocols import BENCHMARKS
from replaymask.experiments.store import ResultsStore
from replaymask.experiments.sweep import MAX_RUNS, load_sweep, run_sweep, sweep_keys

FAST = settings(deadline=None, database=None, max_examples=40,
                suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
DATASETS = tuple(BENCHMARKS)
BENCHMARK_FILTER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}(@[0-9a-f]{1,64})?")
METHODS = method_names()
SWEEP_KEYS = sweep_keys()
OWN_SETTINGS = method_settings()  # every method's own settings, from the declarations


class InputAccepted(Exception):
    """Raised where a run would start: the input got past every check."""


@pytest.fixture(autouse=True, scope="module")
def nothing_runs():
    import torch

    def refuse(*args, **kwargs):
        raise InputAccepted(f"the input was accepted: {args!r:.200} {kwargs!r:.200}")

    threads = torch.get_num_threads()  # `run` sets torch's threads before loading data
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("replaymask.data.benchmarks.load_benchmark", refuse)
        patch.setattr("replaymask.core.training.train", refuse)
        patch.setattr("replaymask.experiments.sweep.run_sweep", refuse)
        yield
    torch.set_num_threads(threads)


def call(argv: list[str]) -> tuple[int, str, str]:
    """``cli.main(argv)``: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


def assert_one_clear_error(code: int, stdout: str, stderr: str, mentions: str | None = None):
    assert code == 2, stderr
    assert stderr.startswith("replaymask: error: "), stderr
    assert stderr.endswith("\n") and len(stderr.splitlines()) == 1, stderr
    assert "Traceback" not in stderr
    assert stdout == ""
    if mentions is not None:
        assert mentions in stderr, (mentions, stderr)


# --- values as typed on a command line ---------------------------------------------------

# A command line cannot hold a NUL character; anything else can.
ARG_TEXT = st.text(st.characters(exclude_characters="\x00"), max_size=12)
ODD_TEXT = st.sampled_from([
    "", " ", "-", "+", "--", "nan", "NaN", "-nan", "inf", "-inf", "+inf", "Infinity", "1e400",
    "-1e400", "1e3", "1.5", "0.0", "-0", "1,000", "0x10", "1 2", "½", "٣", "True", "None",
    "\n", "1\n", " 3 ", str(10**30), str(-10**30), str(2**64), "9" * 5000, "\u2028",
])


def _int_within(text: str, low: int, high: int | None) -> bool:
    try:
        value = int(text)
    except ValueError:
        return False
    return low <= value and (high is None or value <= high)


def bad_ints(low: int, high: int | None = None):
    """Text that is not an integer in [low, high]: below, above, huge, floats, words."""
    texts = [st.integers(max_value=low - 1).map(str), st.floats().map(repr), ODD_TEXT, ARG_TEXT]
    if high is not None:
        texts += [st.integers(min_value=high + 1).map(str), st.just(str(10**30))]
    return st.one_of(texts).filter(lambda text: not _int_within(text, low, high))


def _float_ok(text: str, positive: bool) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return math.isfinite(value) and (value > 0 if positive else value >= 0)


def bad_floats(positive: bool):
    """Text that is not a finite number > 0 (``positive``) or >= 0: negative, NaN, inf..."""
    return st.one_of(st.floats().map(repr), st.integers(max_value=0).map(str), ODD_TEXT,
                     ARG_TEXT).filter(lambda text: not _float_ok(text, positive))


def bad_fractions(high: float):
    """Text that is not a number from 0 to ``high``."""
    def ok(text):
        try:
            return 0 <= float(text) <= high
        except ValueError:
            return False
    return st.one_of(st.floats().map(repr), st.floats(high, 10, exclude_min=True).map(repr),
                     ODD_TEXT, ARG_TEXT).filter(lambda text: not ok(text))


def bad_texts_for(setting):
    """Bad command-line values of a method's own setting, from its declaration (floats
    have a lower bound of 0 in every declaration so far; the assertion says if one differs)."""
    if setting.kind == "float":
        assert setting.minimum == 0, setting
        if setting.maximum is not None:
            return bad_fractions(setting.maximum)
        return bad_floats(positive=setting.above_minimum)
    if setting.kind == "int":
        return bad_ints(int(setting.minimum), int(setting.maximum))
    assert setting.kind == "choice", setting
    return bad_choices(setting.choices)


def bad_choices(choices):
    near_misses = st.sampled_from(choices).flatmap(lambda c: st.sampled_from([
        c.upper(), c.title(), f" {c}", f"{c} ", c.replace("-", "_"), c.replace("_", "-"),
        c[:-1], c + "s", f"{c},{c}", f"'{c}'", f"{c}\n"]))
    return st.one_of(near_misses, ODD_TEXT, ARG_TEXT).filter(lambda text: text not in choices)


def _device_ok(text: str) -> bool:
    """torch's spelling: cpu, cuda, or cuda:N with N an 8-bit index without leading zeros."""
    match = re.fullmatch(r"cuda(?::(0|[1-9][0-9]*))?", text)
    return text == "cpu" or (match is not None and int(match.group(1) or 0) <= 127)


BAD_DEVICES = st.one_of(
    st.sampled_from(["CPU", " cpu", "cpu:0", "cuda:", "cuda:00", "cuda:-1", "cuda:128",
                     "cuda:1 ", "cuda:１", "cuda:0:0", "cuda0", "gpu", "mps", "tpu", "xla"]),
    st.integers().map(lambda n: f"cuda:{n}"), ODD_TEXT, ARG_TEXT,
).filter(lambda text: not _device_ok(text))


def _milestones_ok(text: str) -> bool:
    if text.strip().lower() == "none":
        return True
    try:
        return all(int(part) >= 1 for part in text.split(","))
    except ValueError:
        return False


BAD_MILESTONES = st.one_of(
    st.lists(st.integers(max_value=60), min_size=1, max_size=4).map(
        lambda ms: ",".join(map(str, ms))),
    st.sampled_from([",", "35,", ",45", "35;45", "35 45", "35,,45", "[35, 45]", "none,35",
                     "nones"]),
    ODD_TEXT, ARG_TEXT,
).filter(lambda text: not _milestones_ok(text))


def _mask_ok(text: str) -> bool:
    if text.strip().lower() == "detach":
        return True
    try:
        value = float(text)
    except ValueError:
        return False
    return not math.isnan(value) and value != math.inf


# The empty value is left out: see test_an_empty_mask_value_is_refused (a cli.py fix).
BAD_MASK_VALUES = st.one_of(
    st.sampled_from(["nan", "inf", "+inf", "Infinity", "1e400", "detached", "'detach'",
                     "-inf!"]),
    ODD_TEXT, ARG_TEXT,
).filter(lambda text: text != "" and not _mask_ok(text))

def needs(name: str) -> list[str]:
    """The flags under which a method's own setting is the chosen method's."""
    return ["--model", methods_using(name)[0]]


# flag -> (flags it needs, bad values)
RUN_FLAGS = {
    "--buffer-size": ([], bad_ints(0, MAX_COUNT)),
    "--seed": ([], bad_ints(0, SEED_LIMIT - 1)),
    "--n-epochs": ([], bad_ints(1, MAX_COUNT)),
    "--batch-size": ([], bad_ints(1, MAX_COUNT)),
    "--minibatch-size": ([], bad_ints(1, MAX_COUNT)),
    "--lr": ([], bad_floats(positive=True)),
    "--gms-mask-value": (["--gms"], BAD_MASK_VALUES),
    "--class-order-seed": ([], bad_ints(0, SEED_LIMIT - 1)),
    "--n-tasks": ([], bad_ints(2, MAX_COUNT)),
    "--validation-fraction": ([], bad_fractions(MAX_VALIDATION_FRACTION)),
    # huge values are left out: see test_a_huge_thread_count_is_refused (a cli.py fix)
    "--threads": ([], bad_ints(1)),
    "--model": ([], bad_choices(METHODS)),
    "--dataset": ([], bad_choices(DATASETS)),
    "--device": ([], BAD_DEVICES),
    "--precision": ([], bad_choices(PRECISIONS)),
    "--lr-milestones": ([], BAD_MILESTONES),
} | {setting.flag: (needs(name), bad_texts_for(setting))
     for name, setting in OWN_SETTINGS.items() if setting.kind != "bool"}
# Valid values of other flags, given alongside the bad one.
GOOD_FLAGS = {
    "--buffer-size": st.integers(0, MAX_COUNT).map(str),
    "--seed": st.integers(0, SEED_LIMIT - 1).map(str),
    "--n-epochs": st.integers(1, 50).map(str),
    "--batch-size": st.integers(1, 256).map(str),
    "--minibatch-size": st.integers(1, 256).map(str),
    "--lr": st.floats(1e-6, 10).map(repr),
    "--class-order-seed": st.integers(0, SEED_LIMIT - 1).map(str),
    "--n-tasks": st.sampled_from(["2", "5", "10"]),
    "--validation-fraction": st.floats(0, MAX_VALIDATION_FRACTION).map(repr),
    "--dataset": st.sampled_from(DATASETS),
    "--precision": st.sampled_from(PRECISIONS),
    "--lr-milestones": st.sampled_from(["none", "35,45", "1", " 2 ,3"]),
    "--threads": st.integers(1, 4).map(str),
}


def _spellings(flag: str) -> list[str]:
    return [flag, "--" + flag[2:].replace("-", "_")] if "-" in flag[2:] else [flag]


@st.composite
def good_flags(draw, leave_out=()):
    names = draw(st.lists(st.sampled_from(sorted(GOOD_FLAGS.keys() - set(leave_out))),
                          unique=True, max_size=3))
    return [[f"{name}={draw(GOOD_FLAGS[name])}"] for name in names]


@pytest.mark.parametrize("flag", sorted(RUN_FLAGS))
@FAST
@given(data=st.data())
def test_a_bad_run_flag_value_is_one_line_exit_2_and_nothing_written(flag, data):
    needs, bad_values = RUN_FLAGS[flag]
    value = data.draw(bad_values, label="value")
    spelling = data.draw(st.sampled_from(_spellings(flag)), label="spelling")
    # `--flag=--` is left out: see test_flag_equals_double_dash_is_refused (a cli.py fix)
    joined = value != "--" and data.draw(st.booleans(), label="as --flag=value")
    groups = [needs, [f"{spelling}={value}"] if joined else [spelling, value],
              *data.draw(good_flags(leave_out=[flag]), label="valid flags")]
    groups = data.draw(st.permutations(groups), label="order")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        argv = ["run", *(arg for group in groups for arg in group), "--out", str(out),
                "--no-progress", "--no-download"]
        code, stdout, stderr = call(argv)
        # A separate value starting with '-' may read as a flag: argparse names that instead.
        named = joined or not value.startswith("-")
        assert_one_clear_error(code, stdout, stderr, mentions=flag if named else None)
        assert not out.exists() and not os.listdir(tmp)


@FAST
@given(groups=good_flags(), model=st.sampled_from(METHODS), gms=st.booleans())
def test_valid_run_flags_get_past_every_check_to_the_data(groups, model, gms):
    """The control: the same harness sees valid flags accepted (the guard stops them)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        gms = gms and declaration(model).gms.applies  # else refused, rightly
        argv = ["run", "--model", model, *(["--gms"] if gms else []),
                *(arg for group in groups for arg in group), "--out", str(out)]
        with pytest.raises(InputAccepted), contextlib.redirect_stderr(io.StringIO()):
            cli.main(argv)
        assert not out.exists()


@pytest.mark.parametrize("argv, message", [
    (["run", "stray\nargument", "--out", "OUT"], "unrecognized arguments: stray\\nargument"),
    (["run", "--no-such-flag\u2028", "--out", "OUT"], "unrecognized arguments"),
    (["run", "--out", "OUT", "--lr"], "expected one argument"),
    (["run", "--buffer-size", "1", "--buffer-size", "-1", "--out", "OUT"],
     "--buffer-size must be"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    # a rule across settings: the task count must divide the dataset's classes
    (["run", "--n-tasks", "3", "--out", "OUT"], "--n-tasks 3 does not split seq-mnist's 10"),
    (["run", "--dataset", "seq-cifar100", "--n-tasks", "3", "--out", "OUT"],
     "(one of 2, 4, 5, 10, 20, 25, 50, 100)"),
    (["run", "--n-tasks", "20", "--out", "OUT"], "--n-tasks 20 does not split"),
    (["sweep"], "the following arguments are required"),
    (["analyze", "--mask-values", "none,nan", "--out", "OUT"], "--gms-mask-value must be"),
    (["analyze", "--mask-values", "", "--out", "OUT"], "--gms-mask-value must be"),
    (["analyze", "--buffer-size", str(10**30), "--out", "OUT"], "--buffer-size must be"),
    (["analyze", "--seed", str(2**32), "--out", "OUT"], "--seed must be"),
])
def test_command_line_mistakes_are_one_escaped_line(argv, message):
    with tempfile.TemporaryDirectory() as tmp:
        code, stdout, stderr = call([tmp + "/out" if arg == "OUT" else arg for arg in argv])
        assert_one_clear_error(code, stdout, stderr, mentions=message)
        assert not os.listdir(tmp)


# --- values in a sweep file ---------------------------------------------------------------

def _number(value) -> float | None:
    """A real number (not a bool) as a float; an integer too large for a float is +-inf."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


INT_RANGES = {"buffer_size": (0, MAX_COUNT), "seed": (0, SEED_LIMIT - 1),
              "class_order_seed": (0, SEED_LIMIT - 1), "n_epochs": (1, MAX_COUNT),
              "batch_size": (1, MAX_COUNT), "minibatch_size": (1, MAX_COUNT),
              "n_tasks": (2, MAX_COUNT)}
POSITIVE = ["lr"]
NON_NEGATIVE = []
FRACTIONS = {"validation_fraction": MAX_VALIDATION_FRACTION}  # from 0 to this
CHOICES = {"model": METHODS, "dataset": DATASETS, "precision": PRECISIONS}
BOOLS = ["gms", "gms_on_buffer", "compile", "channels_last"]
OPTIONAL = {"n_epochs", "batch_size", "minibatch_size", "lr", "class_order_seed",
            "lr_milestones", "precision", "channels_last", "n_tasks", "validation_fraction",
            "backbone", "dataset_options", "benchmark_fingerprint", "backbone_fingerprint"}
BACKBONES = ("mlp", "resnet18")  # the built-in networks (no module registers more here)
# a built-in benchmark takes no options and has no fingerprint: only "none given" is valid
ONLY_NONE = ("dataset_options", "benchmark_fingerprint", "backbone_fingerprint")
for _name, _setting in OWN_SETTINGS.items():  # the methods' own, as declared
    if _setting.kind == "int":
        INT_RANGES[_name] = (int(_setting.minimum), int(_setting.maximum))
    elif _setting.kind == "float":
        assert _setting.minimum == 0, _setting
        (POSITIVE if _setting.above_minimum else NON_NEGATIVE).append(_name)
    elif _setting.kind == "choice":
        CHOICES[_name] = _setting.choices
    else:
        assert _setting.kind == "bool", _setting
        BOOLS.append(_name)
    if _setting.default is None:
        OPTIONAL.add(_name)


def setting_ok(key: str, value) -> bool:
    """Whether ``value`` is a valid sweep-file value of ``key`` (the specification)."""
    if value is None:
        return key in OPTIONAL
    if key in ONLY_NONE:
        return value == {} if key == "dataset_options" else False
    if key == "backbone":
        return isinstance(value, str) and value in BACKBONES
    if key in INT_RANGES:
        low, high = INT_RANGES[key]
        return _is_int(value) and low <= value <= high
    if key in POSITIVE + NON_NEGATIVE:
        number = _number(value)
        return (number is not None and math.isfinite(number)
                and (number > 0 if key in POSITIVE else number >= 0))
    if key in FRACTIONS:
        number = _number(value)
        return number is not None and 0 <= number <= FRACTIONS[key]
    if key in CHOICES:
        return isinstance(value, str) and value in CHOICES[key]
    if key in BOOLS:
        return isinstance(value, bool)
    if key == "device":
        return isinstance(value, str) and _device_ok(value)
    if key == "gms_mask_value":
        number = _number(value)
        return (_mask_ok(value) if isinstance(value, str)
                else number is not None and not math.isnan(number) and number != math.inf)
    assert key == "lr_milestones", key
    return isinstance(value, list) and all(_is_int(v) and v >= 1 for v in value)


GOOD_SETTINGS = {
    "model": st.sampled_from(METHODS),
    "dataset": st.sampled_from(DATASETS),
    "buffer_size": st.integers(0, MAX_COUNT),
    "seed": st.integers(0, SEED_LIMIT - 1),
    "n_epochs": st.none() | st.integers(1, MAX_COUNT),
    "batch_size": st.none() | st.integers(1, MAX_COUNT),
    "minibatch_size": st.none() | st.integers(1, MAX_COUNT),
    "lr": st.none() | st.floats(0, 1e6, exclude_min=True) | st.integers(1, 10),
    "gms": st.booleans(),
    "gms_mask_value": st.sampled_from(["-inf", "detach", " detach", "-1e3"])
    | st.floats(allow_nan=False).filter(lambda v: v != math.inf) | st.integers(-10, 10),
    "gms_on_buffer": st.booleans(),
    "class_order_seed": st.none() | st.integers(0, SEED_LIMIT - 1),
    # the task counts that split every benchmark's classes (10, 100, 200) evenly; the
    # rule across settings (n_tasks must divide the dataset's classes) is tested apart
    "n_tasks": st.none() | st.sampled_from([2, 5, 10]),
    "validation_fraction": st.floats(0, MAX_VALIDATION_FRACTION) | st.just(0),
    "device": st.sampled_from(["cpu", "cuda", "cuda:0", "cuda:127"]),
    "lr_milestones": st.none(),
    "precision": st.none() | st.sampled_from(PRECISIONS),
    "channels_last": st.none() | st.booleans(),
    "compile": st.booleans(),
    "backbone": st.none() | st.just("mlp"),  # resnet18 suits the vision benchmarks only
    "dataset_options": st.none() | st.just({}),
    "benchmark_fingerprint": st.none(),
    "backbone_fingerprint": st.none(),
}


def _good_values(name: str):
    """Valid values of a method's own setting, from its declaration."""
    kind = OWN_SETTINGS[name].kind
    high = OWN_SETTINGS[name].maximum  # a float's upper bound, where it has one
    strategy = (st.integers(*INT_RANGES[name]) if kind == "int"
                else st.floats(0, 1e6 if high is None else high, exclude_min=name in POSITIVE)
                | st.integers(1 if name in POSITIVE else 0, 10 if high is None else int(high))
                if kind == "float"
                else st.sampled_from(CHOICES[name]) if kind == "choice" else st.booleans())
    return st.none() | strategy if name in OPTIONAL else strategy


GOOD_SETTINGS |= {name: _good_values(name) for name in OWN_SETTINGS}
assert GOOD_SETTINGS.keys() == SWEEP_KEYS

# YAML values that are no run setting: dates, bytes (!!binary), sets (!!set)
ODD_YAML = st.one_of(st.dates(), st.binary(max_size=4), st.sets(st.integers(0, 3), max_size=2))
ANY_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                       st.text(max_size=10), ODD_TEXT, ODD_YAML,
                       st.sampled_from([10**30, -10**30, 2**64, 10**400, -10**400, 0, 1, 1.0]))
BAD_SETTINGS = {key: ANY_SCALAR.filter(lambda v, key=key: not setting_ok(key, v))
                for key in sorted(SWEEP_KEYS)}


def _spelled(key: str, dashes: bool) -> str:
    return key.replace("_", "-") if dashes else key


@st.composite
def good_grids(draw, leave_out=(), min_size=1):
    keys = draw(st.lists(st.sampled_from(sorted(SWEEP_KEYS - set(leave_out))), unique=True,
                         min_size=min_size, max_size=4))
    grid = {}
    for key in keys:
        values = draw(st.lists(GOOD_SETTINGS[key], min_size=1, max_size=2))
        grid[_spelled(key, draw(st.booleans()))] = (
            values if len(values) > 1 or draw(st.booleans()) else values[0])
    return grid


@st.composite
def bad_value_documents(draw):
    """A valid grid but for one key's value (alone, in a list, an empty or nested list)."""
    key = draw(st.sampled_from(sorted(SWEEP_KEYS)))
    bad = draw(BAD_SETTINGS[key])
    good = draw(st.lists(GOOD_SETTINGS[key], max_size=2))
    shapes = [bad, draw(st.permutations([*good, bad])), [], [[bad]], [*good, [bad, bad]],
              {"value": bad}, [*good, {key: bad}]]
    if key == "lr_milestones":  # its value is a list: wrapping a bad epoch in lists can
        shapes = [bad, {"value": bad}]  # make a good value ([1], [[1]]), and [] is good too
    value = draw(st.sampled_from(shapes))
    grid = draw(good_grids(leave_out=[key], min_size=0))
    grid[_spelled(key, draw(st.booleans()))] = value
    return _maybe_in_grids(draw, grid), key


def _maybe_in_grids(draw, grid):
    if not draw(st.booleans()):
        return grid
    others = draw(st.lists(good_grids(), max_size=2))
    return {"grids": draw(st.permutations([*others, grid]))}


@st.composite
def unknown_key_documents(draw):
    key = draw(st.one_of(
        st.text(max_size=12).filter(lambda k: k.replace("-", "_") not in SWEEP_KEYS
                                    and k != "grids"),
        st.sampled_from(["modle", "buffer size", "Seed", "lr_", "grid", "runs", "gms-mask"]),
        st.integers(), st.booleans(), st.none(), st.floats(allow_nan=False)))
    grid = draw(good_grids(min_size=0))
    grid[key] = draw(GOOD_SETTINGS["seed"] | ANY_SCALAR)
    return _maybe_in_grids(draw, grid)


NOT_A_MAPPING = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
    st.lists(st.none() | st.integers() | st.text(max_size=5), max_size=3), st.just({}),
    st.just([{"model": "er"}]))
BAD_GRIDS = st.one_of(
    NOT_A_MAPPING.filter(lambda grids: not (isinstance(grids, list) and grids
                                            and all(isinstance(g, dict) and g for g in grids))),
    st.lists(good_grids(), max_size=2).flatmap(
        lambda good: st.permutations([*good, {}]) | st.permutations([*good, None])
        | st.permutations([*good, "model: er"]) | st.permutations([*good, [{"seed": 1}]])),
    good_grids(),  # a mapping, not a list of them
)


@st.composite
def duplicate_key_documents(draw):
    """The same setting twice: the same spelling (YAML keeps the last) or dash/underscore."""
    key = draw(st.sampled_from(sorted(SWEEP_KEYS)))
    first, second = draw(GOOD_SETTINGS[key]), draw(GOOD_SETTINGS[key])
    dashes = draw(st.booleans()), draw(st.booleans())
    rest = draw(good_grids(leave_out=[key], min_size=0))
    lines = [yaml.safe_dump({_spelled(key, dashes[0]): first}),
             yaml.safe_dump({_spelled(key, dashes[1]): second})]
    lines += [yaml.safe_dump({k: v}) for k, v in rest.items()]
    return "".join(draw(st.permutations(lines)))


def _dump(document) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def _might_be_valid(raw: bytes) -> bool:
    """Random bytes that YAML reads as a mapping of known keys could be a valid sweep."""
    try:
        document = yaml.safe_load(raw)
    except Exception:  # anything YAML cannot read is a bad sweep file
        return False
    return isinstance(document, dict) and bool(document) and all(
        isinstance(k, str) and (k.replace("-", "_") in SWEEP_KEYS or k == "grids")
        for k in document)


BAD_SWEEP_FILES = st.one_of(
    bad_value_documents().map(lambda doc_key: _dump(doc_key[0])),
    unknown_key_documents().map(_dump),
    NOT_A_MAPPING.map(_dump),
    BAD_GRIDS.map(lambda grids: _dump({"grids": grids})),
    st.tuples(good_grids(), st.lists(good_grids(), min_size=1, max_size=2)).map(
        lambda g: _dump({**g[0], "grids": g[1]})),  # grids mixed with settings
    duplicate_key_documents(),
).map(str.encode) | (st.text(max_size=40).map(str.encode) | st.binary(max_size=40)).filter(
    lambda raw: not _might_be_valid(raw))


def sweep_cli(sweep_file: Path, db: Path, *extra: str) -> list[str]:
    return ["sweep", str(sweep_file), "--db", str(db), "--no-progress", "--workers", "1",
            *extra]


@settings(FAST, max_examples=300)
@given(raw=BAD_SWEEP_FILES)
def test_a_bad_sweep_file_is_one_line_exit_2_and_no_database(raw):
    with tempfile.TemporaryDirectory() as tmp:
        sweep_file, db = Path(tmp) / "sweep.yaml", Path(tmp) / "results.db"
        sweep_file.write_bytes(raw)
        assert_one_clear_error(*call(sweep_cli(sweep_file, db)))
        assert os.listdir(tmp) == ["sweep.yaml"]


@settings(FAST, max_examples=200)
@given(document_key=bad_value_documents())
def test_a_bad_sweep_value_is_named_in_the_error(document_key):
    document, key = document_key
    with tempfile.TemporaryDirectory() as tmp:
        sweep_file, db = Path(tmp) / "sweep.yaml", Path(tmp) / "results.db"
        sweep_file.write_text(_dump(document), encoding="utf-8")
        code, stdout, stderr = call(sweep_cli(sweep_file, db))
        assert_one_clear_error(code, stdout, stderr)
        assert key in stderr or key.replace("_", "-") in stderr, (key, stderr)
        assert not db.exists()


@settings(FAST, max_examples=40)
@given(document=good_grids().flatmap(lambda grid: st.just(grid) | st.lists(
    good_grids(), max_size=2).map(lambda more: {"grids": [grid, *more]})))
def test_valid_sweep_files_get_past_every_check_to_the_runs(document):
    """The control: valid sweep files reach run_sweep (the guard) through the same CLI."""
    with tempfile.TemporaryDirectory() as tmp:
        sweep_file, db = Path(tmp) / "sweep.yaml", Path(tmp) / "results.db"
        sweep_file.write_text(_dump(document), encoding="utf-8")
        with pytest.raises(InputAccepted):
            call(sweep_cli(sweep_file, db))


YAML_TRAPS = [
    ("seed: !!int abc\n", "not valid YAML"),
    ("lr: !!float x\n", "not valid YAML"),
    ("seed: 2021-02-30\n", "not valid YAML"),  # a date YAML cannot build
    ("seed: 2021-02-03\n", "must hold a value"),  # a date it can
    ("[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ("{a: " * 3000 + "1" + "}" * 3000 + "\n", "nested too deeply"),
    ("seed: 0x" + "f" * 4000 + "\n", "an integer of 16000 bits"),  # too long to print
    ("lr: " + "9" * 400 + "\n", "--lr must be a finite number"),  # beyond a float
    ("gms: true\ngms_mask_value: " + "9" * 400 + "\n", "--gms-mask-value must be"),
    ("? 0x" + "f" * 4000 + "\n: 1\n", "unknown key <an integer"),
    ("seed: &a [*a]\n", "must hold a value"),  # a list that holds itself
    ("grids: [&a {seed: *a}]\n", "not valid YAML"),  # a mapping that holds itself
    ("model: er\n---\nmodel: der\n", "not valid YAML"),
    ("model: er\nseed: [0, 1]\nseed: 2\n", "'seed' is given twice"),
    ("buffer-size: 10\nbuffer_size: 20\n", "are the same setting"),
    ("grids: [{model: er}]\nseed: 1\n", "'grids' cannot be mixed"),
    ("model:\ter\n", "not valid YAML"),
    ("model: er\x00\n", "not valid YAML"),
    ("device: 5\n", "--device must be"),
    ("dataset: !!set {seq-mnist}\n", "must hold a value"),
    ("model: !!binary ZXI=\n", "must hold a value"),
    ("gms: null\n", "--gms must be true or false"),
    ("seed: 0\nlr_milestones: [[35, x]]\n", "integer epochs"),
    ("seed: \"0\\n1\"\n", "--seed must be an integer"),
    ("seed: [" + ", ".join(map(str, range(400))) + "]\nbuffer_size: ["
     + ", ".join(map(str, range(400))) + "]\n", f"more than {MAX_RUNS}"),
    ("a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
     "c: [*b, *b, *b, *b, *b, *b, *b, *b]\n", "unknown key 'a'"),  # a billion laughs
]


@pytest.mark.parametrize("text, message", YAML_TRAPS)
def test_yaml_traps_are_one_clear_line(text, message):
    with tempfile.TemporaryDirectory() as tmp:
        sweep_file, db = Path(tmp) / "sweep.yaml", Path(tmp) / "results.db"
        sweep_file.write_text(text, encoding="utf-8")
        assert_one_clear_error(*call(sweep_cli(sweep_file, db)), mentions=message)
        assert not db.exists()


@pytest.mark.parametrize("raw", [b"\xff\xfe\x00", "model: er\n".encode("utf-16"),
                                 b"model: er\xe9\n", b"\x80"])
def test_a_sweep_file_that_is_not_utf8_is_one_clear_line(raw):
    with tempfile.TemporaryDirectory() as tmp:
        sweep_file, db = Path(tmp) / "sweep.yaml", Path(tmp) / "results.db"
        sweep_file.write_bytes(raw)
        assert_one_clear_error(*call(sweep_cli(sweep_file, db)), mentions="not UTF-8")
        assert not db.exists()


# --- flags of sweep, runs and report ------------------------------------------------------

VALID_SWEEP = "model: er\nseed: [0, 1]\n"


@FAST
@given(workers=bad_ints(1), spelling=st.sampled_from(["--workers", "--workers="]))
def test_bad_worker_counts_are_refused_before_the_database(workers, spelling):
    if workers == "--":  # see test_flag_equals_double_dash_is_refused (a cli.py fix)
        spelling = "--workers"
    with tempfile.TemporaryDirectory() as tmp:
        sweep_file, db = Path(tmp) / "sweep.yaml", Path(tmp) / "results.db"
        sweep_file.write_text(VALID_SWEEP)
        flag = [spelling + workers] if spelling.endswith("=") else [spelling, workers]
        code, stdout, stderr = call(["sweep", str(sweep_file), "--db", str(db), *flag])
        named = spelling.endswith("=") or not workers.startswith("-")
        assert_one_clear_error(code, stdout, stderr, mentions="--workers" if named else None)
        assert not db.exists()


def _nan_or_inf(text: str) -> bool:
    try:
        return not math.isfinite(float(text))
    except ValueError:
        return False


@FAST
@given(cpus=bad_floats(positive=True).filter(lambda text: not _nan_or_inf(text)
                                             and text != "--"))
def test_bad_ray_cpus_per_run_are_refused_before_the_database(cpus):
    # NaN and inf are left out: see test_nan_or_infinite_ray_cpus_are_refused (a cli.py fix)
    with tempfile.TemporaryDirectory() as tmp:
        sweep_file, db = Path(tmp) / "sweep.yaml", Path(tmp) / "results.db"
        sweep_file.write_text(VALID_SWEEP)
        code, stdout, stderr = call(sweep_cli(sweep_file, db, f"--ray-cpus-per-run={cpus}"))
        assert_one_clear_error(code, stdout, stderr, mentions="--ray-cpus-per-run")
        assert not db.exists()


def _not_our_database(path: Path) -> None:
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE other (x)")
    connection.commit()
    connection.close()


@pytest.mark.parametrize("case", [
    "missing sweep file", "sweep file is a folder", "data root is missing",
    "data root is a file", "db is a folder", "db in a missing folder", "db not sqlite",
    "db not ours"])
def test_bad_sweep_paths_are_one_line_and_write_nothing(case):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sweep_file, db, extra = tmp / "sweep.yaml", tmp / "results.db", []
        sweep_file.write_text(VALID_SWEEP)
        if case == "missing sweep file":
            sweep_file = tmp / "nope.yaml"
        elif case == "sweep file is a folder":
            sweep_file = tmp / "folder.yaml"
            sweep_file.mkdir()
        elif case == "data root is missing":
            extra = ["--data-root", str(tmp / "no-data")]
        elif case == "data root is a file":
            extra = ["--data-root", str(sweep_file)]
        elif case == "db is a folder":
            db.mkdir()
        elif case == "db in a missing folder":
            db = tmp / "no-folder" / "results.db"
        elif case == "db not sqlite":
            db.write_bytes(b"not a database, but someone's notes\n")
        else:
            _not_our_database(db)
        before = _snapshot(tmp)
        assert_one_clear_error(*call(sweep_cli(sweep_file, db, *extra)))
        assert _snapshot(tmp) == before


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
            for p in sorted(folder.rglob("*"))}


@FAST
@given(command=st.sampled_from(["runs", "report"]), content=st.binary(min_size=1, max_size=64)
       | st.text(min_size=1, max_size=64).map(str.encode))
def test_runs_and_report_refuse_a_file_that_is_not_a_database(command, content):
    # An empty file is left out: see test_runs_on_an_empty_file_writes_nothing (store.py).
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "results.db"
        db.write_bytes(content)
        assert_one_clear_error(*call([command, "--db", str(db), *(
            ["--out", tmp + "/report"] if command == "report" else [])]))
        assert os.listdir(tmp) == ["results.db"] and db.read_bytes() == content


@pytest.mark.parametrize("command,case", [
    (command, case) for command in ("runs", "report")
    for case in ("missing", "folder", "not ours", "empty replaymask db")
    if (command, case) != ("runs", "empty replaymask db")])  # listing no runs is fine
def test_runs_and_report_on_a_bad_database_are_one_line(command, case):
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "results.db"
        if case == "folder":
            db.mkdir()
        elif case == "not ours":
            _not_our_database(db)
        elif case == "empty replaymask db":
            ResultsStore(db).connection.close()
        before = _snapshot(Path(tmp))
        out = Path(tmp) / "report"
        code, stdout, stderr = call([command, "--db", str(db), *(
            ["--out", str(out)] if command == "report" else [])])
        assert_one_clear_error(code, stdout, stderr)
        assert not out.exists()
        if case != "empty replaymask db":  # opening ours may leave SQLite's WAL files
            assert _snapshot(Path(tmp)) == before


@FAST
@given(flag=st.sampled_from(["--status", "--model", "--dataset"]), data=st.data())
def test_runs_filters_with_bad_choices_are_one_line(flag, data):
    choices = {"--status": ("done", "failed"), "--model": METHODS, "--dataset": DATASETS}[flag]
    # `--flag=--` is left out: see test_flag_equals_double_dash_is_refused (a cli.py fix)
    value = data.draw(bad_choices(choices).filter(lambda text: text != "--"))
    if flag == "--dataset":  # any benchmark's name may be in a database: not a name is bad
        assume(BENCHMARK_FILTER.fullmatch(value) is None)
    with tempfile.TemporaryDirectory() as tmp:
        assert_one_clear_error(*call(["runs", "--db", tmp + "/r.db", f"{flag}={value}"]),
                               mentions=flag)
        assert not os.listdir(tmp)


# --- the positive control: valid settings resolve, and equal runs hash equally -----------

FLOAT_KEYS = (*POSITIVE, *NON_NEGATIVE, *FRACTIONS, "gms_mask_value")


@st.composite
def valid_settings(draw):
    settings_ = {key: draw(strategy) for key, strategy in GOOD_SETTINGS.items()}
    settings_["lr_milestones"] = draw(st.none() | st.lists(st.integers(1, 100), max_size=3))
    if settings_["gms"] and not declaration(settings_["model"]).gms.applies:
        settings_["gms"] = False  # refused, rightly, where GMS does not apply
    mask = settings_["gms_mask_value"]
    if isinstance(mask, str) and mask.strip() != "detach":  # text is the sweep file's form
        settings_["gms_mask_value"] = float(mask)
    elif isinstance(mask, str):
        settings_["gms_mask_value"] = "detach"
    return settings_


def _same_number_otherwise(value):
    """An equal value of another type or sign: 2.0 -> 2, 2 -> 2.0, -0.0 -> 0.0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    if isinstance(value, int):
        return float(value)
    if value == 0:
        return -value
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


@settings(FAST, max_examples=150)
@given(settings_=valid_settings())
def test_valid_settings_resolve_and_equal_configs_hash_equally(settings_):
    resolved = resolve(settings_)
    assert resolved.provenance.summary() and resolved.lr > 0 and resolved.n_epochs >= 1
    json.dumps(resolved.to_dict(), allow_nan=False)  # -inf is written as the string "-inf"
    again = resolve(resolved.to_dict())  # the stored form describes the same run
    assert again == resolved and again.hash == resolved.hash
    twin = {k: _same_number_otherwise(v) if k in FLOAT_KEYS else v for k, v in settings_.items()}
    assert resolve(twin).hash == resolved.hash


@settings(FAST, max_examples=60)
@given(settings_=valid_settings())
def test_a_sweep_file_and_the_api_give_the_same_run(settings_):
    settings_["lr_milestones"] = None  # the API takes a tuple, the file a list: kept simple
    with tempfile.TemporaryDirectory() as tmp:
        sweep_file = Path(tmp) / "sweep.yaml"
        sweep_file.write_text(_dump(settings_), encoding="utf-8")
        (config,) = load_sweep(sweep_file)
    assert config.hash == resolve(settings_).hash


def test_a_sweep_starts_no_more_workers_than_runs(monkeypatch):
    """A huge --workers is harmless: the process pool is sized by the pending runs."""
    from concurrent.futures import Future

    from replaymask.experiments import sweep

    sizes = []

    class Pool:
        def __init__(self, max_workers, **options):
            sizes.append(max_workers)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def submit(self, fn, *args):
            future = Future()
            future.set_result((None, "not run"))
            return future

    monkeypatch.setattr(sweep, "ProcessPoolExecutor", Pool)
    with tempfile.TemporaryDirectory() as tmp:
        configs = [resolve(model="er", seed=s) for s in (0, 1)]
        store = ResultsStore(Path(tmp) / "r.db")
        summary = run_sweep(configs, store, workers=10**30, progress=False)
        store.connection.close()
    assert sizes == [2] and summary.ran == 2


# --- mistakes caught in cli.py and store.py --------------------------------------------


def test_a_huge_thread_count_is_refused():
    with tempfile.TemporaryDirectory() as tmp:
        code, stdout, stderr = call(["run", "--threads", str(10**30), "--out", tmp + "/o"])
        assert_one_clear_error(code, stdout, stderr, mentions="--threads")


def test_an_empty_mask_value_is_refused():
    with tempfile.TemporaryDirectory() as tmp:
        code, stdout, stderr = call(["run", "--gms", "--gms-mask-value=", "--out", tmp + "/o"])
        assert_one_clear_error(code, stdout, stderr, mentions="--gms-mask-value")


@pytest.mark.parametrize("cpus", ["nan", "inf"])
def test_nan_or_infinite_ray_cpus_are_refused(cpus):
    with tempfile.TemporaryDirectory() as tmp:
        sweep_file, db = Path(tmp) / "sweep.yaml", Path(tmp) / "results.db"
        sweep_file.write_text(VALID_SWEEP)
        code, stdout, stderr = call(sweep_cli(sweep_file, db, "--ray-cpus-per-run", cpus))
        assert_one_clear_error(code, stdout, stderr, mentions="--ray-cpus-per-run")
        assert not db.exists()


def test_an_output_folder_that_cannot_be_created_is_refused_before_training():
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "a-file").write_text("")
        code, stdout, stderr = call(["run", "--out", tmp + "/a-file/out"])
        assert_one_clear_error(code, stdout, stderr, mentions="--out")


@pytest.mark.parametrize("argv", [
    ["run", "--lr-milestones=--"], ["run", "--gms", "--gms-mask-value=--"],
    ["run", "--threads=--"], ["sweep", "SWEEP", "--workers=--"],
    ["sweep", "SWEEP", "--ray-cpus-per-run=--"], ["runs", "--status=--"]])
def test_flag_equals_double_dash_is_refused(argv):
    with tempfile.TemporaryDirectory() as tmp:
        sweep_file, db = Path(tmp) / "sweep.yaml", Path(tmp) / "results.db"
        sweep_file.write_text(VALID_SWEEP)
        argv = [str(sweep_file) if arg == "SWEEP" else arg for arg in argv]
        extra = ["--out", tmp + "/o"] if argv[0] == "run" else ["--db", str(db)]
        assert_one_clear_error(*call([*argv, *extra]), mentions=argv[-1].split("=")[0])
        assert sorted(os.listdir(tmp)) == ["sweep.yaml"]


def test_runs_on_an_empty_file_writes_nothing():
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "results.db"
        db.write_bytes(b"")
        assert_one_clear_error(*call(["runs", "--db", str(db)]))
        assert db.read_bytes() == b""

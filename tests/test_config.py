"""A run's configuration: declared by the methods, resolved once, frozen, with provenance."""

import importlib
import math
import pickle
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from replaymask import cli
from replaymask.config import all_settings, core_settings, resolve
from replaymask.core.methods import (
    DeclarationError,
    MethodDeclaration,
    _read_declaration,
    declarations,
    method_class,
)
from replaymask.core.methods.base import ContinualMethod
from replaymask.data.protocols import BENCHMARKS
from replaymask.errors import ConfigError
from replaymask.experiments.sweep import load_sweep

# --- the methods' declarations --------------------------------------------------------------


@pytest.mark.parametrize("name", list(declarations()))
def test_a_method_file_declares_its_class_settings_and_best_arguments(name):
    method = declarations()[name]
    module = importlib.import_module(method.module)
    assert module.METHOD["name"] == name == Path(module.__file__).stem
    cls = method_class(name)
    assert issubclass(cls, ContinualMethod) and cls.__module__ == method.module
    owner = declarations()[method.best_args_of] if method.best_args_of else method
    own = {s.name for s in method.settings}
    for table, (source, rows) in owner.best_args.items():
        assert table in BENCHMARKS and source
        for row in rows.values():
            assert set(row) <= {"lr", "minibatch_size", "batch_size"} | own, (table, row)
    for dataset in BENCHMARKS:  # every benchmark has a row (directly or by a fallback)
        resolve(model=name, dataset=dataset)


def test_the_registry_reads_declarations_without_importing_the_methods():
    import subprocess
    import sys

    code = ("import sys\nfrom replaymask.core.methods import declarations\n"
            "assert len(declarations()) >= 8\n"
            "assert not any(m.startswith('replaymask.core.methods.') for m in sys.modules), "
            "sorted(sys.modules)\nassert 'torch' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("text, problem", [
    ('METHOD = {"name": "bad", "label": "B", "class": "B", "order": 1, "buffer": LIMIT}',
     "plain literal"),
    ('METHOD = {"name": "other", "label": "B", "class": "B", "order": 1, "buffer": True,\n'
     '          "gms": ("none", "why")}', "must be the file's"),
    ('METHOD = {"name": "bad", "label": "B", "class": "B", "order": 1}',
     "lacks ['buffer', 'gms']"),
    ('METHOD = {"name": "bad", "label": "B", "class": "B", "order": 1, "buffer": True,\n'
     '          "gms": ("none", "why"), "settings": {"w": {"kind": "complex"}}}', "unknown kind"),
    ('METHOD = {"name": "bad", "label": "B", "class": "B", "order": 1, "buffer": True,\n'
     '          "gms": ("none", "why"), "best_args": {"seq-mnist": {200: {"lr": 0.1}}}}',
     "(source, {buffer size"),
    ('METHOD = {"name": "bad", "label": "B", "class": "B", "order": 1, "buffer": True,\n'
     '          "gms": ("somehow", "masked")}', "gms must be (kind, how)"),
    ('METHOD = {"name": "bad", "label": "B", "class": "B", "order": 1, "buffer": True,\n'
     '          "gms": ("none", "")}', "gms must be (kind, how)"),
])
def test_a_malformed_declaration_is_an_error_naming_the_file(tmp_path, text, problem):
    path = tmp_path / "bad.py"
    path.write_text(text + "\n")
    with pytest.raises(DeclarationError, match="bad.py") as error:
        _read_declaration(path)
    assert problem in str(error.value)


def test_a_file_without_a_declaration_is_no_method(tmp_path):
    path = tmp_path / "helpers.py"
    path.write_text('"""Shared code."""\nLIMIT = 3\n')
    assert _read_declaration(path) is None


def test_the_flags_sweep_keys_and_labels_come_from_the_declarations(capsys):
    run_help = cli.build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    for method in declarations().values():
        for setting in method.settings:
            assert setting.flag in run_help and setting.name in all_settings()
    assert cli.main(["methods"]) == 0
    listing = capsys.readouterr().out
    assert all(f"{m.name:10} {m.label}:" in listing for m in declarations().values())


def test_a_method_without_best_arguments_for_a_benchmark_names_what_to_pass(monkeypatch,
                                                                           tmp_path, capsys):
    monkeypatch.setattr(MethodDeclaration, "best_args_row", lambda *args: None)
    with pytest.raises(ConfigError, match="derpp has no best arguments for seq-mnist: pass "
                                          "--lr, --alpha, --beta"):
        resolve(model="derpp")
    config = resolve(model="derpp", lr=0.1, alpha=0.5, beta=0.5)
    assert config.provenance.best_args == "" and config.method_settings.der_logits == "stream"
    assert config.minibatch_size == config.batch_size  # the replay batch: Mammoth's default
    assert cli.main(["run", "--model", "er", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err == "replaymask: error: er has no best arguments for seq-mnist: pass --lr\n"

# --- resolution --------------------------------------------------------------------------


def test_a_config_is_frozen_picklable_and_equal_runs_are_equal():
    config = resolve(model="derpp", gms=True, gms_mask_value="0")
    with pytest.raises(FrozenInstanceError):
        config.lr = 1.0
    with pytest.raises(AttributeError):
        config.method_settings.alpha = 1.0
    again = pickle.loads(pickle.dumps(config))
    assert again == config and again.hash == config.hash and again.provenance == config.provenance
    same_run = resolve(model="derpp", gms=True, gms_mask_value=0, alpha=0.2, lr=0.03)
    assert same_run == config and same_run.hash == config.hash
    assert same_run.provenance != config.provenance  # what was set differs, not the run


@pytest.mark.parametrize(("model", "batch", "replay"), [
    ("fdr", 128, 128), ("gss", 128, 10), ("hal", 128, 128), ("mer", 1, 128)])
def test_a_best_args_row_may_carry_the_stream_batch(model, batch, replay):
    """The DER paper ran FDR, GSS and HAL on S-MNIST with stream batches of 128 and MER
    with 1: the row's batch replaces the benchmark's 10, and the provenance says so; the
    user's --batch-size still wins."""
    config = resolve({"model": model, "buffer_size": 200})
    assert (config.batch_size, config.minibatch_size) == (batch, replay)
    assert "batch_size" in config.provenance.from_best_args
    assert "batch_size" not in config.provenance.from_benchmark
    assert config.provenance.source_of("batch_size").startswith(
        f"DER paper best args for seq-mnist, {model}, buffer 200")
    mine = resolve({"model": model, "buffer_size": 200, "batch_size": 32})
    assert mine.batch_size == 32 and "batch_size" not in mine.provenance.from_best_args
    assert resolve({"model": "er", "buffer_size": 200}).batch_size == 10


def test_provenance_names_what_was_set_and_where_the_rest_came_from():
    config = resolve({"model": "er", "buffer_size": 20, "lr": 0.05}, origin="command line")
    provenance = config.provenance
    assert provenance.user_set == ("model", "buffer_size", "lr")
    assert provenance.from_best_args == ("minibatch_size",)
    assert provenance.from_benchmark == ("n_epochs", "batch_size", "lr_milestones")
    assert provenance.source_of("lr") == "set (command line)"
    assert provenance.source_of("minibatch_size").startswith("DER paper best args for "
                                                             "seq-mnist, er, buffer 200")
    assert provenance.source_of("seed") == "default"
    assert provenance.summary() == ("DER paper best args for seq-mnist, er, buffer 200 "
                                    "(nearest row to buffer 20); overridden: lr")


def test_a_sweep_files_runs_name_only_what_the_file_set(tmp_path):
    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_text("model: [sgd, derpp]\nseed: [0, 1]\ngms: [false, true]\n"
                          "gms_mask_value: [-inf, 0]\nalpha: 0.3\n")
    configs = load_sweep(sweep_file)
    assert len(configs) == 2 * 2 * 3  # gms off: the mask values are one run
    for config in configs:
        provenance = config.provenance
        assert provenance.origin == "sweep file s.yaml"
        assert set(provenance.user_set) <= {"model", "seed", "gms", "gms_mask_value", "alpha"}
        assert "overridden: lr" not in provenance.summary()
        ignored = dict(provenance.ignored)
        if config.model == "sgd":
            assert ignored["alpha"].startswith("sgd has no such setting")
        if not config.gms:
            assert ignored["gms_mask_value"] == "needs gms"
        if config.model == "derpp":
            assert config.method_settings.alpha == 0.3
            assert provenance.summary().endswith("; overridden: alpha")


@pytest.mark.parametrize("given, ignored", [
    ({"gms_mask_value": 0.0}, "gms_mask_value"),
    ({"gms_on_buffer": True}, "gms_on_buffer"),
    ({"model": "er", "der_logits": "post-step"}, "der_logits"),
    ({"model": "sgd", "buffer_size": 500}, "buffer_size"),
    ({"model": "derpp", "gamma": 0.5}, "gamma"),
])
def test_a_setting_that_cannot_matter_is_dropped_and_recorded(given, ignored):
    config = resolve(given)
    assert ignored in dict(config.provenance.ignored)
    plain = resolve({key: value for key, value in given.items() if key != ignored})
    assert config == plain and config.hash == plain.hash


def test_every_value_is_checked_once_against_its_declaration():
    with pytest.raises(ConfigError, match="--gms-mask-value must be a number"):
        resolve(gms=True, gms_mask_value="nan")
    with pytest.raises(ConfigError, match="--simclr-temp must be a finite number > 0"):
        resolve(model="er", simclr_temp=0)  # checked even where it will be dropped
    with pytest.raises(ConfigError, match="unknown setting 'learning_rate'"):
        resolve(learning_rate=0.1)
    assert resolve(gms=True, gms_mask_value=" -INF ").gms_mask_value == -math.inf
    assert resolve(gms=True, gms_mask_value="Detach").gms_mask_value == "detach"


def test_every_core_setting_has_a_flag_and_help():
    run_help = cli.build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    for setting in core_settings():
        assert setting.help
        if setting.command_line:  # the fingerprints are checked keys of stored configurations
            flag = "--dataset-option" if setting.name == "dataset_options" else setting.flag
            assert flag in run_help


@pytest.mark.parametrize("name, least", [("study.db", 3417), ("reproduction.db", 305)])
def test_every_configuration_stored_in_the_results_databases_resolves_to_its_hash(name,
                                                                                   least):
    """A change to the settings, their defaults or the config's dictionary that would give
    stored runs new hashes (and so run them again, or orphan them) fails here."""
    import json
    import sqlite3
    from pathlib import Path

    db = Path(__file__).resolve().parent.parent / "results" / name
    rows = sqlite3.connect(f"file:{db}?mode=ro", uri=True).execute(
        "SELECT config_hash, config FROM runs").fetchall()
    assert len(rows) >= least
    moved = [key for key, config in rows if resolve(json.loads(config)).hash != key]
    assert moved == []


def test_the_reproduction_sweep_files_find_every_run_recorded():
    import sqlite3
    from pathlib import Path

    from replaymask.experiments.sweep import load_sweep

    root = Path(__file__).resolve().parent.parent
    db = root / "results" / "reproduction.db"  # read-only: the tracked file stays as it is
    held = {key for (key,) in sqlite3.connect(f"file:{db}?mode=ro", uri=True).execute(
        "SELECT config_hash FROM runs")}
    for name in ("der-table", "gms-table"):
        configs = load_sweep(root / "docs" / "reproduction" / f"{name}.yaml")
        assert all(config.hash in held for config in configs), name

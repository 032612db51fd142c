"""The command line: a real run writes its results; every user mistake is one line, exit 2."""

import json
import math

import pytest

from replaymask import cli
from replaymask.config import resolve
from replaymask.core.settings import Setting
from replaymask.errors import ConfigError


def run_cli(args, capsys):
    code = cli.main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_run_writes_result_json_and_csv(mnist_like_root, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(
        ["run", "--model", "derpp", "--buffer-size", "20", "--gms", "--gms-mask-value", "-2.5",
         "--data-root", str(mnist_like_root), "--out", str(out), "--no-progress"], capsys)
    assert code == 0, stderr
    result = json.loads((out / "result.json").read_text())
    assert result["config"]["gms_mask_value"] == -2.5 and result["config"]["gms"] is True
    assert result["config"]["minibatch_size"] == 128  # DER paper row for buffer 200
    assert "nearest row to buffer 20" in result["hyperparameter_source"]
    assert len(result["accuracy_matrix"]["class_il"]) == 5
    assert (out / "accuracy_matrix.csv").is_file()
    assert "Class-IL accuracy" in stdout and "average" in stdout
    assert "nearest row to buffer 20" in stderr


def test_mammoth_spelling_of_flags_is_accepted(mnist_like_root, tmp_path, capsys):
    code, _, stderr = run_cli(
        ["run", "--model", "er", "--buffer_size", "10", "--n_epochs", "1", "--minibatch_size",
         "5", "--data_root", str(mnist_like_root), "--out", str(tmp_path / "o"),
         "--no-progress"], capsys)
    assert code == 0, stderr
    config = json.loads((tmp_path / "o" / "result.json").read_text())["config"]
    assert (config["buffer_size"], config["minibatch_size"]) == (10, 5)


def test_no_arguments_runs_the_derpp_gms_demo(monkeypatch):
    seen = {}
    monkeypatch.setattr(cli, "_main", lambda args: seen.setdefault("args", args) and 0)
    assert cli.main([]) == 0
    args = seen["args"]
    assert (args.model, args.dataset, args.buffer_size, args.gms) == ("derpp", "seq-mnist", 200,
                                                                      True)


BAD_INPUTS = [
    (["--model", "lucir"], "invalid choice: 'lucir'"),
    (["--dataset", "seq-imagenet"], "--dataset: unknown benchmark 'seq-imagenet' (known: "),
    (["--buffer-size", "-5"], "--buffer-size must be an integer >= 0"),
    (["--buffer-size", "ten"], "invalid int value"),
    (["--lr", "0"], "--lr must be a finite number > 0"),
    (["--lr", "-0.1"], "--lr must be a finite number > 0"),
    (["--lr", "nan"], "--lr must be a finite number > 0"),
    (["--alpha", "-1"], "--alpha must be a finite number >= 0"),
    (["--beta", "-0.5"], "--beta must be a finite number >= 0"),
    (["--n-epochs", "0"], "--n-epochs must be an integer >= 1"),
    (["--minibatch-size", "0"], "--minibatch-size must be an integer >= 1"),
    (["--gms", "--gms-mask-value", "nan"], "--gms-mask-value must be"),
    (["--gms", "--gms-mask-value", "inf"], "--gms-mask-value must be"),
    (["--gms", "--gms-mask-value", "+inf"], "--gms-mask-value must be"),
    (["--gms", "--gms-mask-value", "banana"], "--gms-mask-value must be"),
    (["--seed", "-1"], "--seed must be an integer >= 0"),
    (["--no-such-flag"], "unrecognized arguments"),
    (["--device", "tpu"], "--device must be"),
    (["--threads", "0"], "--threads must be an integer >= 1"),
    (["--model", "xder", "--simclr-num-aug", "1"], "--simclr-num-aug must be an integer >= 2"),
    (["--model", "xder", "--simclr-temp", "0"], "--simclr-temp must be a finite number > 0"),
    (["--model", "xder", "--constr-eta", "-1"], "--constr-eta must be a finite number >= 0"),
    (["--lr-milestones", "35,x"], "--lr-milestones"),
    (["--lr-milestones", "0"], "--lr-milestones must be integers >= 1"),
    (["--precision", "fp8"], "--precision"),
    (["--dataset", "seq-cifar11"], "--dataset"),
]


@pytest.mark.parametrize("args, message", BAD_INPUTS)
def test_bad_input_is_one_line_exit_2_and_nothing_written(args, message, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(["run", *args, "--out", str(out), "--no-progress"], capsys)
    assert code == 2
    assert stderr.count("\n") == 1 and stderr.startswith("replaymask: error:")
    assert message in stderr
    assert "Traceback" not in stderr
    assert not out.exists()


@pytest.mark.parametrize("argv, warning", [
    (["--gms-mask-value=0"], "--gms-mask-value ignored: needs gms"),
    (["--gms-on-buffer"], "--gms-on-buffer ignored: needs gms"),
    (["--model", "er", "--simclr-temp=0.5"], "--simclr-temp ignored: er has no such setting"),
    (["--model", "sgd", "--buffer-size", "50"], "--buffer-size ignored: sgd keeps no buffer"),
])
def test_a_setting_that_cannot_matter_is_ignored_with_a_warning_as_in_sweep_files(
        argv, warning, mnist_like_root, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, stderr = run_cli(["run", *argv, "--n-epochs", "1", "--data-root",
                               str(mnist_like_root), "--out", str(out), "--no-progress"], capsys)
    assert code == 0 and f"replaymask: warning: {warning}" in stderr
    ignored = json.loads((out / "result.json").read_text())["provenance"]["ignored"]
    assert warning.split()[0][2:].replace("-", "_") in ignored


def test_an_unreadable_data_root_is_exit_2(tmp_path, capsys):
    out = tmp_path / "out"
    code, _, stderr = run_cli(["run", "--data-root", str(tmp_path / "nope"), "--out", str(out)],
                              capsys)
    assert code == 2 and "not a readable directory" in stderr and stderr.count("\n") == 1
    assert not out.exists()


def test_a_corrupt_data_file_is_exit_2(mnist_like_root, tmp_path, capsys):
    path = mnist_like_root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])
    out = tmp_path / "out"
    code, _, stderr = run_cli(["run", "--data-root", str(mnist_like_root), "--out", str(out)],
                              capsys)
    assert code == 2 and "t10k-labels-idx1-ubyte.gz" in stderr and stderr.count("\n") == 1
    assert not out.exists()


def test_a_diverging_run_exits_3_and_writes_nothing(mnist_like_root, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, stderr = run_cli(["run", "--model", "sgd", "--lr", "1e30", "--data-root",
                               str(mnist_like_root), "--out", str(out), "--no-progress"], capsys)
    assert code == 3 and "diverged" in stderr
    assert not out.exists()


def test_main_module_runs_as_a_subprocess(tmp_path):
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "replaymask", "run", "--lr", "-1"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == "replaymask: error: --lr must be a finite number > 0, got -1.0"


def test_mask_value_parsing():
    mask = Setting("gms_mask_value", "mask_value", default=-math.inf)
    assert mask.check("-inf") == -math.inf
    assert mask.check(" Detach ") == "detach"
    assert mask.check("-3") == -3.0 and mask.check(-3) == -3.0
    with pytest.raises(ConfigError, match="--gms-mask-value must be"):
        mask.check("inf")


def test_nearest_best_args_row_is_used_and_named():
    config = resolve(model="er", buffer_size=1000)
    note = config.provenance.summary()
    assert config.lr == 0.1 and "buffer 500" in note and "nearest row to buffer 1000" in note
    config = resolve(model="der", dataset="seq-fmnist", buffer_size=200)
    note = config.provenance.summary()
    assert (config.lr, config.method_settings.alpha) == (0.03, 0.2)
    assert "no row for seq-fmnist" in note
    config = resolve(model="sgd", buffer_size=500)
    assert config.buffer_size == 0


def test_run_with_analysis_records_it_in_result_json(mnist_like_root, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, stderr = run_cli(["run", "--model", "er", "--buffer-size", "10", "--gms",
                               "--analysis", "--n-epochs", "3", "--data-root",
                               str(mnist_like_root), "--out", str(out), "--no-progress"], capsys)
    assert code == 0, stderr
    records = json.loads((out / "result.json").read_text())["analysis"]
    assert records and {"grad_old", "old_class_mass", "old_logit_drift"} <= set(records[0])


def test_a_tiny_seq_cifar10_run_on_files_in_the_cifar_format(tmp_path, capsys):
    from .vision_files import write_cifar10_like

    write_cifar10_like(tmp_path / "data", per_class_train=8, per_class_test=3)
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(
        ["run", "--model", "derpp", "--dataset", "seq-cifar10", "--buffer-size", "20",
         "--n-epochs", "1", "--gms", "--data-root", str(tmp_path / "data"), "--out", str(out),
         "--no-progress", "--no-download"], capsys)
    assert code == 0, stderr
    result = json.loads((out / "result.json").read_text())
    config = result["config"]
    assert (config["lr"], config["minibatch_size"], config["alpha"], config["beta"]) == (
        0.03, 32, 0.1, 0.5)  # the DER paper's Seq-CIFAR-10 row for buffer 200
    assert "cifar-10-batches-py" in result["benchmark"]["source"]
    assert [len(row) for row in result["accuracy_matrix"]["class_il"]] == [1, 2, 3, 4, 5]


def test_missing_cifar_data_is_one_line_naming_the_layout_and_exit_2(tmp_path, capsys):
    out = tmp_path / "out"
    code, _, stderr = run_cli(["run", "--dataset", "seq-cifar10", "--data-root", str(tmp_path),
                               "--no-download", "--out", str(out)], capsys)
    assert code == 2 and stderr.count("\n") == 1
    assert "cifar-10-batches-py" in stderr and "download disabled" in stderr
    assert not out.exists()

"""The Mammoth helper (replaymask.integrations.mammoth) and the model files a Mammoth user
copies (integrations/mammoth/models/), tested against a stand-in with the shape of
Mammoth's ContinualModel (tests/mammoth_stand_in.py): Mammoth itself is not needed."""

from __future__ import annotations

import argparse
import ast
import importlib.util
import math
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from replaymask.core.gms import class_to_task_layout, gms_cross_entropy, live_classes
from replaymask.integrations import mammoth
from replaymask.integrations.mammoth import (
    GMSLoss,
    GMSOptionError,
    add_gms_args,
    mammoth_class_to_task,
    parse_mask_value,
)

from . import mammoth_stand_in as stand_in

MODEL_FILES = Path(__file__).resolve().parent.parent / "integrations" / "mammoth" / "models"
SEQ_MNIST_TASKS = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
MASK_VALUES = [float("-inf"), 0.0, -3.5, "detach"]


def parsed(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_gms_args(parser.add_argument_group("Model-specific arguments"))  # as Mammoth passes it
    return parser.parse_args(argv)


def helper_for(**args) -> GMSLoss:
    model = SimpleNamespace(args=SimpleNamespace(**args), loss=F.cross_entropy, NAME="stand_in",
                            **vars(stand_in.SEQ_MNIST_LIKE))
    model.cpt = model.N_CLASSES_PER_TASK
    return GMSLoss(model)


# --- the options -----------------------------------------------------------------------------

def test_the_options_default_to_off_hard_masking_and_an_unmasked_buffer():
    args = parsed([])
    assert (args.gms, args.gms_mask_value, args.gms_on_buffer) == (False, -math.inf, False)


@pytest.mark.parametrize(("argv", "expected"), [
    (["--gms", "1"], (True, -math.inf, False)),
    (["--gms", "true", "--gms_on_buffer", "1"], (True, -math.inf, True)),
    (["--gms", "0", "--gms_on_buffer", "No"], (False, -math.inf, False)),
    (["--gms", "1", "--gms_mask_value=-inf"], (True, -math.inf, False)),
    (["--gms", "1", "--gms_mask_value", "0"], (True, 0.0, False)),
    (["--gms", "1", "--gms_mask_value", "-3.5"], (True, -3.5, False)),
    (["--gms", "1", "--gms_mask_value", "12"], (True, 12.0, False)),
    (["--gms", "1", "--gms_mask_value", " Detach "], (True, "detach", False)),
])
def test_good_option_values_are_parsed(argv, expected):
    args = parsed(argv)
    assert (args.gms, args.gms_mask_value, args.gms_on_buffer) == expected


def test_mammoth_re_parsing_every_default_through_its_type_keeps_the_defaults():
    model = stand_in.build(load_model_file("er_gms").ErGms, ["--lr", "0.1", "--buffer_size", "5"])
    assert (model.args.gms, model.args.gms_mask_value, model.args.gms_on_buffer) == (
        False, -math.inf, False)


@pytest.mark.parametrize(("argv", "named"), [
    (["--gms_mask_value", "nan"], "--gms_mask_value"),
    (["--gms_mask_value=+inf"], "--gms_mask_value"),
    (["--gms_mask_value", "inf"], "--gms_mask_value"),
    (["--gms_mask_value", "minus-infinity"], "--gms_mask_value"),
    (["--gms_mask_value", ""], "--gms_mask_value"),
    (["--gms", "2"], "--gms"),
    (["--gms", "on"], "--gms"),
    (["--gms_on_buffer", "maybe"], "--gms_on_buffer"),
])
def test_a_bad_option_value_ends_with_one_line_naming_the_option(argv, named):
    with pytest.raises(GMSOptionError) as caught:
        parsed(argv)
    message = str(caught.value)
    assert len(message.splitlines()) == 1 and message.startswith(f"error: {named} ")
    assert caught.value.code == message  # SystemExit prints it and exits with status 1


def test_a_bad_option_value_on_a_command_line_prints_one_line_and_exits_non_zero():
    program = textwrap.dedent("""
        import argparse, sys
        from replaymask.integrations.mammoth import add_gms_args
        parser = argparse.ArgumentParser()
        add_gms_args(parser.add_argument_group("Model-specific arguments"))
        parser.parse_args(sys.argv[1:])
    """)
    for argv in (["--gms_mask_value", "nan"], ["--gms", "yes please"]):
        done = subprocess.run([sys.executable, "-c", program, *argv], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode != 0
        assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1
        assert "Traceback" not in done.stderr and argv[0] in done.stderr


@pytest.mark.parametrize("value", [float("nan"), float("inf"), None, True, "abc"])
def test_a_bad_mask_value_given_from_python_is_refused_too(value):
    with pytest.raises(GMSOptionError, match="--gms_mask_value"):
        parse_mask_value(value)
    with pytest.raises(GMSOptionError, match="--gms_mask_value"):
        helper_for(gms=True, gms_mask_value=value)


# --- the class-to-task layout ------------------------------------------------------------------

def test_the_layout_follows_mammoths_classes_per_task():
    model = SimpleNamespace(cpt=2, N_TASKS=5, N_CLASSES=10)
    assert torch.equal(mammoth_class_to_task(model), class_to_task_layout(SEQ_MNIST_TASKS))


def test_a_list_of_classes_per_task_gives_tasks_of_those_sizes():
    model = SimpleNamespace(cpt=[3, 1, 2], N_TASKS=3, N_CLASSES=7)
    assert mammoth_class_to_task(model).tolist() == [0, 0, 0, 1, 2, 2, -1]


# --- the losses --------------------------------------------------------------------------------

@pytest.mark.parametrize("mask_value", MASK_VALUES)
def test_the_stream_loss_is_gms_cross_entropy_on_the_stream_rows(mask_value):
    logits = torch.randn(12, 10, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([4, 5, 5, 4, 4, 5, 0, 3, 9, 6, 1, 2])
    live = live_classes(labels, class_to_task_layout(SEQ_MNIST_TASKS))
    loss = helper_for(gms=True, gms_mask_value=mask_value).stream_loss(logits, labels)
    assert torch.equal(loss, gms_cross_entropy(logits, labels, live, mask_value))


@pytest.mark.parametrize("mask_value", MASK_VALUES)
@pytest.mark.parametrize("on_buffer", [False, True])
def test_a_stream_and_replay_batch_masks_stream_rows_and_replay_rows_only_on_request(
        mask_value, on_buffer):
    logits = torch.randn(10, 10, generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([6, 7, 7, 6, 6, 0, 1, 3, 2, 5])  # 5 stream rows (task 3), 5 replayed
    live = live_classes(labels, class_to_task_layout(SEQ_MNIST_TASKS))
    rows = gms_cross_entropy(logits, labels, live, mask_value, reduction="none")
    plain = F.cross_entropy(logits, labels, reduction="none")
    expected = torch.cat([rows[:5], rows[5:] if on_buffer else plain[5:]]).mean()
    helper = helper_for(gms=True, gms_mask_value=mask_value, gms_on_buffer=on_buffer)
    assert torch.allclose(helper.stream_and_replay_loss(logits, labels, stream=5), expected)
    replay = helper.replay_loss(logits[5:], labels[5:])
    assert torch.allclose(replay, (rows if on_buffer else plain)[5:].mean())


@pytest.mark.parametrize("mask_value", MASK_VALUES)
def test_no_gradient_reaches_other_tasks_logits_from_the_stream(mask_value):
    logits = torch.randn(8, 10, generator=torch.Generator().manual_seed(3), requires_grad=True)
    labels = torch.tensor([2, 3, 3, 2, 2, 3, 2, 3])  # task 1
    helper_for(gms=True, gms_mask_value=mask_value).stream_loss(logits, labels).backward()
    assert logits.grad[:, [2, 3]].abs().sum() > 0
    assert torch.count_nonzero(logits.grad[:, [0, 1, 4, 5, 6, 7, 8, 9]]) == 0


def test_with_the_switch_off_every_loss_is_the_models_own_loss():
    calls = []

    def own_loss(logits, labels):
        calls.append(len(labels))
        return F.cross_entropy(logits, labels)

    model = SimpleNamespace(args=SimpleNamespace(gms=False), loss=own_loss, cpt=2, N_TASKS=5,
                            N_CLASSES=10, SETTING="class-il")
    helper = GMSLoss(model)
    logits, labels = torch.randn(6, 10), torch.tensor([0, 1, 2, 3, 4, 5])
    assert torch.equal(helper.stream_loss(logits, labels), F.cross_entropy(logits, labels))
    assert torch.equal(helper.replay_loss(logits, labels), F.cross_entropy(logits, labels))
    assert torch.equal(helper.stream_and_replay_loss(logits, labels, stream=3),
                       F.cross_entropy(logits, labels))
    assert calls == [6, 6, 6]


def test_mask_options_without_the_switch_warn_that_they_do_nothing():
    with pytest.warns(UserWarning, match="no effect without --gms 1"):
        helper_for(gms=False, gms_mask_value=0.0)
    with pytest.warns(UserWarning, match="no effect without --gms 1"):
        helper_for(gms=False, gms_on_buffer=True)


def test_gms_on_a_dataset_without_tasks_of_their_own_classes_is_refused_in_one_line():
    domain_il = SimpleNamespace(SETTING="domain-il", N_CLASSES_PER_TASK=10, N_TASKS=5,
                                N_CLASSES=10)
    er_gms = load_model_file("er_gms").ErGms
    with pytest.raises(GMSOptionError, match="class-il or task-il") as caught:
        stand_in.build(er_gms, ["--lr", "0.1", "--buffer_size", "5", "--gms", "1"],
                       dataset=domain_il)
    assert len(str(caught.value).splitlines()) == 1
    stand_in.build(er_gms, ["--lr", "0.1", "--buffer_size", "5"], dataset=domain_il)  # off: ok


@pytest.mark.parametrize("loss", [F.nll_loss, nn.CrossEntropyLoss(label_smoothing=0.1),
                                  nn.MSELoss()])
def test_gms_on_a_dataset_whose_loss_is_not_plain_cross_entropy_is_refused(loss):
    with pytest.raises(GMSOptionError, match="plain cross-entropy"):
        stand_in.build(load_model_file("er_gms").ErGms,
                       ["--lr", "0.1", "--buffer_size", "5", "--gms", "1"], loss=loss)


# --- the model files ---------------------------------------------------------------------------

def load_model_file(name: str):
    """Import ``integrations/mammoth/models/<name>.py`` over the stand-in Mammoth."""
    patch = pytest.MonkeyPatch()
    try:
        stand_in.install_as_mammoth(patch)
        spec = importlib.util.spec_from_file_location(f"copied_{name}", MODEL_FILES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        patch.undo()


MODEL_FILE_NAMES = sorted(path.stem for path in MODEL_FILES.glob("*.py"))


def test_there_are_er_and_derpp_model_files():
    assert {"er_gms", "derpp_gms"} <= set(MODEL_FILE_NAMES)


@pytest.mark.parametrize("name", MODEL_FILE_NAMES)
def test_a_model_file_compiles_and_imports_only_public_helper_names(name):
    source = (MODEL_FILES / f"{name}.py").read_text()
    tree = ast.parse(source)
    compile(tree, name, "exec")
    ours = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
            and "replaymask" in (getattr(node, "module", None) or node.names[0].name)]
    assert ours and all(isinstance(node, ast.ImportFrom)
                        and node.module == "replaymask.integrations.mammoth" for node in ours)
    assert {alias.name for node in ours for alias in node.names} <= set(mammoth.__all__)


@pytest.mark.parametrize("name", MODEL_FILE_NAMES)
def test_a_model_file_follows_mammoths_naming(name):
    module = load_model_file(name)
    classes = [value for value in vars(module).values() if isinstance(value, type)
               and getattr(value, "NAME", None) == name]
    assert len(classes) == 1, f"{name}.py must define one model whose NAME is {name!r}"
    assert set(classes[0].COMPATIBILITY) == {"class-il", "task-il"}
    assert hasattr(module, "Buffer")  # Mammoth fills --minibatch_size only when it sees one


ER_ARGS = ["--lr", "0.1", "--buffer_size", "8", "--minibatch_size", "4"]
DERPP_ARGS = [*ER_ARGS, "--alpha", "0.3", "--beta", "0.7"]
MODELS = [("er_gms", "ErGms", stand_in.Er, ER_ARGS),
          ("derpp_gms", "DerppGms", stand_in.Derpp, DERPP_ARGS)]


def train(model, tasks=(0, 0, 1, 1, 2)) -> list[float]:
    losses = []
    for step, task in enumerate(tasks):
        inputs, labels = stand_in.task_batch(task, seed=step)
        losses.append(model.observe(inputs, labels, inputs))
    return losses


@pytest.mark.parametrize(("name", "class_name", "plain", "argv"), MODELS)
def test_a_model_file_with_gms_off_trains_exactly_as_the_model_it_extends(
        name, class_name, plain, argv):
    copied = getattr(load_model_file(name), class_name)
    ours, theirs = stand_in.build(copied, [*argv, "--gms", "0"]), stand_in.build(plain, argv)
    assert train(ours) == train(theirs)
    for mine, reference in zip(ours.net.parameters(), theirs.net.parameters(), strict=True):
        assert torch.equal(mine, reference)


@pytest.mark.parametrize(("name", "class_name", "plain", "argv"), MODELS)
@pytest.mark.parametrize("mask_value", ["-inf", "0", "detach"])
def test_a_model_file_with_gms_on_leaves_other_tasks_classes_alone_on_a_first_batch(
        name, class_name, plain, argv, mask_value):
    copied = getattr(load_model_file(name), class_name)
    model = stand_in.build(copied, [*argv, "--gms", "1", f"--gms_mask_value={mask_value}"])
    before = [p.detach().clone() for p in model.net.parameters()]
    train(model, tasks=(1,))  # the buffer is empty: stream rows only
    weight, bias = (p.detach() - b for p, b in zip(model.net.parameters(), before, strict=True))
    others = [0, 1, 4, 5, 6, 7, 8, 9]
    assert torch.count_nonzero(weight[others]) == 0 and torch.count_nonzero(bias[others]) == 0
    assert torch.count_nonzero(weight[[2, 3]]) > 0


@pytest.mark.parametrize(("name", "class_name", "plain", "argv"), MODELS)
def test_a_model_file_with_gms_on_trains_differently_from_the_plain_model(
        name, class_name, plain, argv):
    copied = getattr(load_model_file(name), class_name)
    ours, theirs = stand_in.build(copied, [*argv, "--gms", "1"]), stand_in.build(plain, argv)
    assert train(ours) != train(theirs)

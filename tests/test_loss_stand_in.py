"""benchmarks/loss_stand_in.py: a stand-in step must make the same network calls as the
method's own step (forward passes with their rows, backward passes, updates), or the
comparison would not be the method's loss alone; a closed-form step must train as the
method does (its gradient written out correctly), or its time would not be the loss's."""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def loss_stand_in(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # its sibling, step_breakdown
    spec = importlib.util.spec_from_file_location("loss_stand_in_under_test",
                                                  BENCHMARKS / "loss_stand_in.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("step_breakdown", None)


@pytest.mark.parametrize("name", ["LODE", "BiC"])
def test_the_stand_in_makes_the_network_calls_of_the_method(name, loss_stand_in, real_mnist,
                                                            monkeypatch):
    from replaymask.core.methods import method_class
    from replaymask.data.benchmarks import load_benchmark

    benchmark = load_benchmark("seq-mnist", download=False)
    settings = loss_stand_in.CONFIGS[name]
    event_log = sys.modules["step_breakdown"].event_log
    own = event_log(settings, benchmark, max_steps_per_task=30)
    stand_in = loss_stand_in.STAND_INS[name]
    monkeypatch.setattr(method_class(settings["model"]), "observe",
                        lambda method, raw_inputs, labels: stand_in(method, raw_inputs, labels))
    replaced = event_log(settings, benchmark, max_steps_per_task=30)
    assert replaced == own
    assert sum(len(events) for events in own) > 5 * 30 * 3  # forwards, backward, update


@pytest.mark.parametrize("name", ["LODE", "BiC"])
def test_the_closed_form_trains_as_the_method_does(name, loss_stand_in, real_mnist):
    import torch

    from replaymask.data.benchmarks import load_benchmark

    benchmark = load_benchmark("seq-mnist", download=False)
    step_breakdown = sys.modules["step_breakdown"]
    trained = {}
    for variant in ("step", "closed_form"):
        _, net, method = step_breakdown.build(loss_stand_in.CONFIGS[name], benchmark)
        step_breakdown.one_pass(loss_stand_in.with_variant(method, name, variant), benchmark,
                                0, max_steps_per_task=40)
        trained[variant] = torch.cat([p.detach().flatten() for p in net.parameters()])
    start = torch.cat([p.detach().flatten() for p in
                       step_breakdown.build(loss_stand_in.CONFIGS[name], benchmark)[1]
                       .parameters()])
    moved = (trained["step"] - start).abs().max()
    assert moved > 0.01  # 200 steps, four tasks of them through the method's own loss
    difference = (trained["closed_form"] - trained["step"]).abs().max()
    assert difference < 1e-4 * moved

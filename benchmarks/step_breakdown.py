"""Where an S-MNIST training step's time goes: our overhead against the arithmetic floor.

    python benchmarks/step_breakdown.py [--threads 1] [--repeats 3] [--configs ...]
        [--max-steps-per-task N] [--out results/step_breakdown-1thread.json]

Configurations (buffer 200, real S-MNIST, each method at the arguments replaymask declares
for it, the DER paper's where it has them): ER, ER + GMS, DER++, DER++ + GMS, DER++ with
replay batches of 10, ER-ACE (the default set), and the other rehearsal methods, named
with ``--configs``: A-GEM, GEM, FDR, iCaRL, GSS, HAL, MER, LODE, BiC, GDumb. For each, one
process:

* **step**: the time of ``method.observe`` over a whole pass of the stream, the best of
  ``--repeats`` passes. The pass is the training loop's, without evaluation: per task,
  ``begin_task``; the task's stream (``training_data`` where the method changes it:
  iCaRL's and BiC's join the memory), shuffled, in batches of the run's ``batch_size``
  (10; FDR, GSS and HAL 128; MER 1: 6,000, ~470 or 60,000 steps); ``end_task``. Only
  ``observe`` is timed: what a method does at the end of a task (GEM's and A-GEM's memory,
  FDR's, HAL's anchors, iCaRL's herding, BiC's bias layer, GDumb's whole fit) is outside
  the step, but it runs, so each step sees the state it would see in training. GDumb
  fits for one epoch instead of 256: its step only fills the memory, which the fit does
  not touch. ``--max-steps-per-task N`` ends each task's stream after N steps (every
  task still begins and ends), for methods with many steps (MER).
* **floor**: the same arithmetic with nothing else. During a real pass the events of each
  ``observe`` are logged in order: every forward pass of the network (its rows, whether
  it builds a graph; ``net.features`` alone as its own kind, HAL's mean feature), every
  backward (``Tensor.backward``, ``torch.autograd.backward`` and ``torch.autograd.grad``;
  whether it adds onto gradients left from before), every optimiser step
  (``PlainSGD.step``: from ``method.update`` or called directly, as GEM, A-GEM and HAL
  do), and GSS's per-item gradients (one vectorised ``torch.func`` call: the groups and
  their rows). The floor replays that sequence on pre-made float32 batches that sit in
  memory: each forward as the MLP's three layers called directly (two for ``features``),
  a cross-entropy on each that builds a graph, summed into the pending loss; at each
  backward, the pending loss's backward (gradients cleared first unless the real one
  added onto them); at each update, the same SGD update (one foreach add); GSS's
  gradients as the same ``vmap(grad(cross-entropy))`` over the MLP's functions on random
  data. Nothing else: no buffer, no data preparation, no masking, no method losses
  (distillation, function distance, anchors: a cross-entropy stands in), no gradient
  projection or quadratic programme (GEM, A-GEM), no Reptile interpolation (MER), no
  similarity scores (GSS), no Python beyond the loop. For ER and DER++ the events are
  forwards, one backward and one update a step, as the floor had them before.
* **breakdown**: a third pass with a timer around each part of the step: preparing the
  images (uint8 -> float), drawing from the buffer, the forward passes, the update
  (``method.update``, or a backward or optimiser step outside it: backward + SGD),
  offering the batch to the buffer (GSS: its gradient-based selection, with its forward
  passes and per-item gradients); a part called inside another is counted in the outer
  one, and a part a method never calls is 0. "losses and the rest" is what the timers do
  not cover (the losses, the masks, concatenation, projections, interpolation, the
  method's Python). The timers add about a microsecond each, so the parts add up to
  slightly more than the step.

The table's "events" column is the mean count per step of forwards (with features),
backwards, updates and per-item gradient calls in the logged pass (f/b/u/g); the floor
checks that it replayed exactly as many of each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from contextlib import ExitStack, contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.func import grad, vmap

from replaymask.config import resolve
from replaymask.core.methods import method_class
from replaymask.core.methods.base import PlainSGD, TaskData
from replaymask.core.networks import default_network
from replaymask.core.training import seed_everything
from replaymask.data.benchmarks import load_benchmark

CONFIGS = {
    "ER": {"model": "er"},
    "ER + GMS": {"model": "er", "gms": True},
    "DER++": {"model": "derpp"},
    "DER++ + GMS": {"model": "derpp", "gms": True},
    "DER++ replay 10": {"model": "derpp", "minibatch_size": 10},  # as Mammoth e75a491 runs it
    "ER-ACE": {"model": "er_ace"},
}
DEFAULT_CONFIGS = list(CONFIGS)
CONFIGS.update({
    "A-GEM": {"model": "agem"},
    "GEM": {"model": "gem"},
    "FDR": {"model": "fdr"},  # batch 128
    "iCaRL": {"model": "icarl"},
    "GSS": {"model": "gss"},  # batch 128
    "HAL": {"model": "hal"},  # batch 128
    "MER": {"model": "mer"},  # batch 1
    "LODE": {"model": "lode"},
    "BiC": {"model": "bic"},
    # the fit after each task is outside the step and leaves what the step does unchanged
    "GDumb": {"model": "gdumb", "fitting_epochs": 1},
})
PARTS = ("prepare", "sample", "forward", "update", "remember")
# The events of a step, in order, each a tuple:
#   ("forward", rows, builds_graph)       the network's forward pass (or a copy's: iCaRL, BiC)
#   ("features", rows, builds_graph)      net.features alone (HAL's mean feature)
#   ("backward", adds_onto_gradients)     Tensor.backward or torch.autograd.backward
#   ("grad",)                             torch.autograd.grad
#   ("update",)                           an optimiser step (PlainSGD.step)
#   ("per-item gradients", groups, rows)  GSS's vmap(grad(cross-entropy)) over groups of rows
FORWARDS = ("forward", "features")
BACKWARDS = ("backward", "grad")
UPDATES = ("update",)
PER_ITEM = ("per-item gradients",)


def build(settings, benchmark):
    config = resolve({"dataset": "seq-mnist", "buffer_size": 200, **settings}, origin="Python")
    seed_everything(config.seed)
    net = default_network(benchmark)
    method = method_class(config.model)(net, benchmark.train_transform(), benchmark.class_to_task,
                                        config)
    return config, net, method


def one_pass(method, benchmark, seed: int, max_steps_per_task: int | None = None,
             between_steps=None) -> tuple[float, int]:
    """Seconds spent in ``observe`` over the 5 tasks (one epoch each, data order as in
    training, batches of the run's ``batch_size``), and the steps taken. ``begin_task``,
    ``training_data`` and ``end_task`` run as in training, outside the timer."""
    batch_size = method.config.batch_size
    order = torch.Generator().manual_seed(seed)
    spent, steps = 0.0, 0
    for task in range(benchmark.n_tasks):
        method.begin_task(task)
        indices = torch.cat([benchmark.task_indices("train", t)
                             for t in method.training_tasks(task)])
        if method.changes_training_data():
            stream = method.training_data(task, TaskData(benchmark.train_inputs[indices],
                                                         benchmark.train_labels[indices]))
            shuffled = torch.randperm(len(stream.labels), generator=order)
            images, labels = stream.inputs[shuffled], stream.labels[shuffled]
        else:
            indices = indices[torch.randperm(len(indices), generator=order)]
            images, labels = benchmark.train_inputs[indices], benchmark.train_labels[indices]
        batches = zip(images.split(batch_size), labels.split(batch_size), strict=True)
        for step, (image_batch, label_batch) in enumerate(batches):
            if max_steps_per_task is not None and step == max_steps_per_task:
                break
            start = time.perf_counter()
            method.observe(image_batch, label_batch)
            spent += time.perf_counter() - start
            steps += 1
            if between_steps is not None:
                between_steps()
        method.end_task(task, TaskData(images, labels))
    return spent, steps


def measured_step(settings, benchmark, repeats: int, max_steps_per_task=None) -> float:
    times = []
    for _ in range(repeats):
        _, _, method = build(settings, benchmark)
        spent, steps = one_pass(method, benchmark, 0, max_steps_per_task)
        times.append(spent / steps)
    return min(times)


@contextmanager
def replaced(owner, name: str, make_wrapper):
    """``owner.name`` replaced by ``make_wrapper(original)`` inside the block."""
    original = getattr(owner, name)
    setattr(owner, name, make_wrapper(original))
    try:
        yield
    finally:
        setattr(owner, name, original)


def event_log(settings, benchmark, max_steps_per_task=None) -> list[list[tuple]]:
    """Per step (one ``observe``), its events in order (the kinds: above ``FORWARDS``).
    Forwards are logged on the network's class, so copies of it (iCaRL's and BiC's previous
    network) count too; events outside ``observe`` (``end_task``) do not."""
    _, net, method = build(settings, benchmark)
    steps, current = [], []
    state = {"observing": False, "inside": 0}  # "inside": depth in a logged call

    def logging(make_event):
        def make_wrapper(original):
            def wrapper(*args, **kwargs):
                if state["observing"] and state["inside"] == 0:
                    current.append(make_event(*args, **kwargs))
                state["inside"] += 1
                try:
                    return original(*args, **kwargs)
                finally:
                    state["inside"] -= 1
            return wrapper
        return make_wrapper

    def adds_onto_gradients():
        return any(p.grad is not None for p in net.parameters())

    def features_event(module, args):
        if state["observing"] and state["inside"] == 0:
            current.append(("features", len(args[0]), torch.is_grad_enabled()))

    with ExitStack() as patches:
        patches.enter_context(replaced(type(net), "forward", logging(
            lambda module, x: ("forward", len(x), torch.is_grad_enabled()))))
        patches.enter_context(replaced(torch.Tensor, "backward", logging(
            lambda *args, **kwargs: ("backward", adds_onto_gradients()))))
        patches.enter_context(replaced(torch.autograd, "backward", logging(
            lambda *args, **kwargs: ("backward", adds_onto_gradients()))))
        patches.enter_context(replaced(torch.autograd, "grad", logging(
            lambda *args, **kwargs: ("grad",))))
        patches.enter_context(replaced(PlainSGD, "step", logging(lambda optimizer: ("update",))))
        # GSS's per-item gradients: (groups, rows per group) of torch.func gradients
        if callable(getattr(method, "_gradients", None)):
            patches.enter_context(replaced(method, "_gradients", logging(
                lambda inputs, labels: ("per-item gradients", *labels.shape))))
        features = getattr(net, "features", None)
        if isinstance(features, torch.nn.Module):
            patches.callback(features.register_forward_pre_hook(features_event).remove)
        patches.enter_context(replaced(method, "observe", lambda original: observing(
            original, state)))

        def next_step():
            steps.append(list(current))
            current.clear()
        one_pass(method, benchmark, 0, max_steps_per_task, next_step)
    return steps


def observing(observe, state):
    """``observe`` with ``state["observing"]`` set while it runs."""
    def wrapper(*args, **kwargs):
        state["observing"] = True
        try:
            return observe(*args, **kwargs)
        finally:
            state["observing"] = False
    return wrapper


def event_counts(log) -> Counter:
    """Forwards, backwards, updates and per-item gradient calls over the whole log."""
    counts = Counter()
    for events in log:
        for event in events:
            for group, kinds in (("f", FORWARDS), ("b", BACKWARDS), ("u", UPDATES),
                                 ("g", PER_ITEM)):
                if event[0] in kinds:
                    counts[group] += 1
    return counts


def mlp(weights, x, layers: int = 3):
    """The MLP's layers called directly on ``weights`` (w1, b1, w2, b2, w3, b3); with
    ``layers=2``, its features (without the classifier)."""
    w1, b1, w2, b2, w3, b3 = weights
    hidden = torch.relu(F.linear(x.flatten(1), w1, b1))
    hidden = torch.relu(F.linear(hidden, w2, b2))
    return hidden if layers == 2 else F.linear(hidden, w3, b3)


def per_item_cross_entropy(weights, x, y):
    return F.cross_entropy(mlp(weights, x), y)


# GSS's per-item gradients, as it takes them: one vmap over groups of rows
per_item_gradients = vmap(grad(per_item_cross_entropy), in_dims=(None, 0, 0))


def floor_step(settings, benchmark, log, repeats: int) -> tuple[float, Counter]:
    """Seconds per step of the logged events replayed with nothing else, and the counts
    of the events it replayed (forwards, backwards, updates, per-item gradients)."""
    config, net, _ = build(settings, benchmark)
    params = [p for p in net.parameters() if p.requires_grad]
    assert len(params) == 6, "the floor replays the MLP's three layers"
    shape = benchmark.train_inputs.shape[1:]
    most_rows = max((event[1] * (event[2] if event[0] in PER_ITEM else 1)
                     for events in log for event in events
                     if event[0] in FORWARDS + PER_ITEM), default=0)
    pool_rows = 2048 + max(2048, most_rows)  # (4096 for every configuration here)
    pool = torch.rand(pool_rows, *shape)
    targets = torch.randint(0, benchmark.num_classes, (pool_rows,))
    times = []
    for _ in range(repeats):
        replayed = Counter()
        start = time.perf_counter()
        for step, events in enumerate(log):
            offset = (step * 37) % 2048
            pending_loss = 0.0
            for kind, *details in events:
                if kind in FORWARDS:
                    rows, builds_graph = details
                    x, y = pool[offset:offset + rows], targets[offset:offset + rows]
                    if builds_graph:
                        if kind == "forward":
                            pending_loss = pending_loss + F.cross_entropy(mlp(params, x), y)
                        else:
                            pending_loss = pending_loss + mlp(params, x, layers=2).mean()
                    else:
                        with torch.no_grad():
                            mlp(params, x, layers=3 if kind == "forward" else 2)
                    replayed["f"] += 1
                elif kind == "backward":
                    (adds_onto_gradients,) = details
                    if not adds_onto_gradients:
                        for p in params:
                            p.grad = None
                    pending_loss.backward()
                    pending_loss = 0.0
                    replayed["b"] += 1
                elif kind == "grad":
                    torch.autograd.grad(pending_loss, params)
                    pending_loss = 0.0
                    replayed["b"] += 1
                elif kind == "update":
                    with torch.no_grad():
                        torch._foreach_add_(params, [p.grad for p in params], alpha=-config.lr)
                    replayed["u"] += 1
                elif kind == "per-item gradients":
                    groups, rows = details
                    x = pool[offset:offset + groups * rows].view(groups, rows, *shape)
                    y = targets[offset:offset + groups * rows].view(groups, rows)
                    per_item_gradients(tuple(p.detach() for p in params), x, y)
                    replayed["g"] += 1
                else:
                    raise ValueError(f"unknown event {kind!r}")
        times.append((time.perf_counter() - start) / len(log))
    return min(times), replayed


def breakdown(settings, benchmark, max_steps_per_task=None) -> dict[str, float]:
    """Seconds per step in each part (one pass with timers around the parts, counting
    only inside ``observe``; a part called inside another counts in the outer one)."""
    _, net, method = build(settings, benchmark)
    spent = dict.fromkeys(PARTS, 0.0)
    timing = {"observing": False, "inside": 0}  # "inside": depth in a timed part

    def timed(part):
        def make_wrapper(original):
            def wrapper(*args, **kwargs):
                if timing["inside"] or not timing["observing"]:  # (not in end_task)
                    return original(*args, **kwargs)
                timing["inside"] += 1
                start = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    spent[part] += time.perf_counter() - start
                    timing["inside"] -= 1
            return wrapper
        return make_wrapper

    with ExitStack() as patches:
        for owner, name, part in (
                (method, "prepare", "prepare"),
                (method.buffer, "sample", "sample"),
                (type(net), "forward", "forward"),  # the class: copies of the network too
                (method, "update", "update"),
                (torch.autograd, "backward", "update"),  # backward outside method.update
                (torch.autograd, "grad", "update"),
                (PlainSGD, "step", "update"),  # an optimiser step outside method.update
                (method, "remember", "remember"),
                (method, "_remember", "remember")):  # GSS: its gradient-based selection
            if hasattr(owner, name):
                patches.enter_context(replaced(owner, name, timed(part)))
        patches.enter_context(replaced(method, "observe", lambda original: observing(
            original, timing)))
        total, steps = one_pass(method, benchmark, 0, max_steps_per_task)
    parts = {part: seconds / steps for part, seconds in spent.items()}
    parts["losses and the rest"] = total / steps - sum(parts.values())
    return parts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=DEFAULT_CONFIGS,
                        metavar="CONFIG", help=f"of: {', '.join(CONFIGS)} (default: the first "
                                                f"{len(DEFAULT_CONFIGS)})")
    parser.add_argument("--max-steps-per-task", type=int, default=None, metavar="N",
                        help="end each task's stream after N steps (default: the whole "
                             "stream); every task still begins and ends")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    benchmark = load_benchmark("seq-mnist", download=False)
    limit = args.max_steps_per_task
    rows = []
    print(f"torch {torch.__version__}, {args.threads} thread(s); microseconds per step"
          + (f"; at most {limit} steps per task" if limit is not None else ""))
    print("step = observe; end-of-task work (memory, anchors, herding, bias layer, GDumb's "
          "fit) is outside it")
    print(f"{'':15s} {'batch':>5s} {'steps':>6s} {'events f/b/u/g':>19s} {'step':>7s} "
          f"{'floor':>7s} {'ratio':>6s}   "
          + "  ".join(f"{part:>8s}" for part in (*PARTS, "rest")))
    for name in args.configs:
        settings = CONFIGS[name]
        step = measured_step(settings, benchmark, args.repeats, limit)
        log = event_log(settings, benchmark, limit)
        floor, replayed = floor_step(settings, benchmark, log, args.repeats)
        logged = event_counts(log)
        if replayed != logged:
            raise RuntimeError(f"{name}: the floor replayed {dict(replayed)}, the real pass "
                               f"logged {dict(logged)}")
        per_step = {group: logged[group] / len(log) for group in "fbug"}
        parts = breakdown(settings, benchmark, limit)
        batch = resolve({"dataset": "seq-mnist", "buffer_size": 200, **settings},
                        origin="Python").batch_size
        # GDumb's step does no arithmetic: its floor is an empty loop, and no ratio
        ratio = step / floor if any(log) else None
        rows.append({"config": name, "settings": settings, "threads": args.threads,
                     "batch_size": batch, "steps": len(log), "max_steps_per_task": limit,
                     "events_per_step": {"forwards": per_step["f"], "backwards": per_step["b"],
                                         "updates": per_step["u"],
                                         "per_item_gradient_calls": per_step["g"]},
                     "step_us": step * 1e6, "floor_us": floor * 1e6, "ratio": ratio,
                     "parts_us": {part: value * 1e6 for part, value in parts.items()}})
        events = "/".join(f"{per_step[group]:.2f}" for group in "fbug")
        print(f"{name:15s} {batch:5d} {len(log):6d} {events:>19s} {step * 1e6:7.1f} "
              f"{floor * 1e6:7.1f} {'-' if ratio is None else f'{ratio:.2f}':>6s}   "
              + "  ".join(f"{value * 1e6:8.1f}" for value in parts.values()), flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {"torch": torch.__version__, "python": sys.version.split()[0], "rows": rows}
        args.out.write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {args.out}")
    ratios = [row["ratio"] for row in rows if row["ratio"] is not None]
    if ratios:
        print("median ratio:", f"{statistics.median(ratios):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

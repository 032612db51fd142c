"""Where an S-MNIST training step's time goes: our overhead against the arithmetic floor.

    python benchmarks/step_breakdown.py [--threads 1] [--repeats 3] [--configs ...]
        [--out results/step_breakdown-1thread.json]

For each configuration (ER, ER + GMS, DER++, DER++ + GMS, DER++ with replay batches of
10, ER-ACE; buffer 200, the DER paper's arguments, real S-MNIST), one process:

* **step**: the time of ``method.observe`` over a whole pass of the stream (5 tasks,
  6,000 steps of batch 10; no evaluation), the best of ``--repeats`` passes.
* **floor**: the same arithmetic with nothing else. During the real pass every forward
  pass of the network is logged (its rows, and whether it builds a graph); the floor
  replays that exact sequence on pre-made float32 batches that sit in memory: the same
  forward passes (the MLP's three layers called directly), a cross-entropy on each, one
  backward, the same SGD update. No buffer, no data preparation, no masking, no Python
  beyond the loop.
* **breakdown**: a third pass with a timer around each part of the step: preparing the
  images (uint8 -> float), drawing from the buffer, the forward passes, the update
  (backward + SGD), offering the batch to the buffer; "losses and the rest" is what the
  timers do not cover (the losses, the masks, concatenation, the method's Python). The
  timers add about a microsecond each, so the parts add up to slightly more than the step.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from replaymask.config import resolve
from replaymask.core.methods import method_class
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
PARTS = ("prepare", "sample", "forward", "update", "remember")


def build(settings, benchmark):
    config = resolve({"dataset": "seq-mnist", "buffer_size": 200, **settings}, origin="Python")
    seed_everything(config.seed)
    net = default_network(benchmark)
    method = method_class(config.model)(net, benchmark.train_transform(), benchmark.class_to_task,
                                        config)
    return config, net, method


def one_pass(method, benchmark, seed: int, between_steps=None) -> tuple[float, int]:
    """Seconds spent in ``observe`` over the 5 tasks (data order as in training), steps."""
    order = torch.Generator().manual_seed(seed)
    spent, steps = 0.0, 0
    for task in range(benchmark.n_tasks):
        method.begin_task(task)
        indices = benchmark.task_indices("train", task)
        indices = indices[torch.randperm(len(indices), generator=order)]
        images, labels = benchmark.train_inputs[indices], benchmark.train_labels[indices]
        for image_batch, label_batch in zip(images.split(10), labels.split(10), strict=True):
            start = time.perf_counter()
            method.observe(image_batch, label_batch)
            spent += time.perf_counter() - start
            steps += 1
            if between_steps is not None:
                between_steps()
    return spent, steps


def measured_step(settings, benchmark, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        _, _, method = build(settings, benchmark)
        spent, steps = one_pass(method, benchmark, 0)
        times.append(spent / steps)
    return min(times)


def forward_log(settings, benchmark) -> list[list[tuple[int, bool]]]:
    """Per step: (rows, builds a graph) of every forward pass of the network."""
    _, net, method = build(settings, benchmark)
    steps, current = [], []
    original = net.forward

    def logged(x):
        current.append((len(x), torch.is_grad_enabled()))
        return original(x)
    net.forward = logged

    def next_step():
        steps.append(list(current))
        current.clear()
    one_pass(method, benchmark, 0, next_step)
    return steps


def floor_step(settings, benchmark, log, repeats: int) -> float:
    config, net, _ = build(settings, benchmark)
    params = [p for p in net.parameters() if p.requires_grad]
    layers = [net.features[1], net.features[3], net.classifier]  # the MLP's, called directly

    def forward(x):
        for layer in layers[:-1]:
            x = torch.relu(F.linear(x.flatten(1), layer.weight, layer.bias))
        return F.linear(x, layers[-1].weight, layers[-1].bias)
    pool = torch.rand(4096, *benchmark.train_inputs.shape[1:])
    targets = torch.randint(0, benchmark.num_classes, (4096,))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for step, passes in enumerate(log):
            offset = (step * 37) % 2048
            loss = 0.0
            for rows, graph in passes:
                x, y = pool[offset:offset + rows], targets[offset:offset + rows]
                if graph:
                    loss = loss + F.cross_entropy(forward(x), y)
                else:
                    with torch.no_grad():
                        forward(x)
            for p in params:
                p.grad = None
            loss.backward()
            with torch.no_grad():
                torch._foreach_add_(params, [p.grad for p in params], alpha=-config.lr)
        times.append((time.perf_counter() - start) / len(log))
    return min(times)


def breakdown(settings, benchmark) -> dict[str, float]:
    """Seconds per step in each part (one pass with timers around the parts)."""
    _, net, method = build(settings, benchmark)
    spent = dict.fromkeys(PARTS, 0.0)

    def timed(owner, name, part):
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            result = original(*args, **kwargs)
            spent[part] += time.perf_counter() - start
            return result
        setattr(owner, name, wrapper)
    timed(method, "prepare", "prepare")
    timed(method.buffer, "sample", "sample")
    timed(net, "forward", "forward")
    timed(method, "update", "update")
    timed(method, "remember", "remember")
    total, steps = one_pass(method, benchmark, 0)
    parts = {part: seconds / steps for part, seconds in spent.items()}
    parts["losses and the rest"] = total / steps - sum(parts.values())
    return parts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    benchmark = load_benchmark("seq-mnist", download=False)
    rows = []
    print(f"torch {torch.__version__}, {args.threads} thread(s); microseconds per step")
    print(f"{'':14s} {'step':>7s} {'floor':>7s} {'ratio':>6s}   "
          + "  ".join(f"{part:>8s}" for part in (*PARTS, "rest")))
    for name in args.configs:
        settings = CONFIGS[name]
        step = measured_step(settings, benchmark, args.repeats)
        floor = floor_step(settings, benchmark, forward_log(settings, benchmark), args.repeats)
        parts = breakdown(settings, benchmark)
        rows.append({"config": name, "settings": settings, "threads": args.threads,
                     "step_us": step * 1e6, "floor_us": floor * 1e6, "ratio": step / floor,
                     "parts_us": {part: value * 1e6 for part, value in parts.items()}})
        print(f"{name:14s} {step * 1e6:7.1f} {floor * 1e6:7.1f} {step / floor:6.2f}   "
              + "  ".join(f"{value * 1e6:8.1f}" for value in parts.values()), flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {"torch": torch.__version__, "python": sys.version.split()[0], "rows": rows}
        args.out.write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {args.out}")
    print("median ratio:", f"{statistics.median(row['ratio'] for row in rows):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

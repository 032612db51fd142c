"""How much of a step's distance from its arithmetic floor is the method's loss.

    python benchmarks/loss_stand_in.py [--threads 1] [--repeats 3] [--configs LODE BiC]
        [--out results/loss_stand_in-1thread.json]

For LODE and BiC, whose steps are not within 1.5x of the floor of ``step_breakdown.py``,
three numbers in microseconds per step (S-MNIST, buffer 200, one pass of the stream as
``step_breakdown.py`` makes it, the best of ``--repeats``, the two steps interleaved):

* **step**: the method's ``observe``, as it trains;
* **stand-in**: the same ``observe`` with the method's loss replaced by what the floor
  puts in its place, one cross-entropy on each forward pass that builds a graph, and
  everything else as the method does it: preparing the batches, the replay draw and the
  reservoir's writes (LODE), the previous network's forward pass (BiC), the network
  called as a module, the update;
* **floor**: ``step_breakdown.py``'s floor of the method's logged events.

stand-in / floor is what a step pays before its own loss; the step is within 1.5x of
the floor only if its loss costs less than (1.5 - stand-in / floor) x floor beyond the
stand-in's cross-entropies, forward and backward.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_breakdown import CONFIGS, build, event_log, floor_step, one_pass  # noqa: E402

from replaymask.data.benchmarks import load_benchmark  # noqa: E402


def lode_stand_in(method, raw_inputs, labels):
    """LODE's step with a cross-entropy on the stream's logits and one on the replay's."""
    loss = F.cross_entropy(method.net(method.prepare(raw_inputs)), labels)
    if method.task > 0 and not method.buffer.is_empty():
        replay = method.buffer.sample(method.config.minibatch_size)
        loss = loss + F.cross_entropy(method.net(method.prepare(replay.examples)),
                                      replay.labels)
    method.update(loss)
    method.remember(raw_inputs, labels)
    return loss.detach()


def bic_stand_in(method, raw_inputs, labels):
    """BiC's step with a cross-entropy on the logits; the previous network still runs."""
    inputs = method.prepare(raw_inputs)
    loss = F.cross_entropy(method.net(inputs), labels)
    if method.old_net is not None and method.layout.task_offsets[method.task] > 0:
        with torch.no_grad():
            method.old_net(inputs)
    method.update(loss)
    return loss.detach()


STAND_INS = {"LODE": lode_stand_in, "BiC": bic_stand_in}


def step_time(name: str, benchmark, stand_in: bool) -> float:
    """Seconds per step of one pass, with the method's own step or its stand-in."""
    _, _, method = build(CONFIGS[name], benchmark)
    if stand_in:
        method.observe = lambda raw_inputs, labels: STAND_INS[name](method, raw_inputs, labels)
    spent, steps = one_pass(method, benchmark, 0)
    return spent / steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--configs", nargs="+", choices=list(STAND_INS), default=list(STAND_INS))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    benchmark = load_benchmark("seq-mnist", download=False)
    print(f"torch {torch.__version__}, {args.threads} thread(s); microseconds per step")
    print(f"{'':6s} {'step':>7s} {'stand-in':>9s} {'floor':>7s} {'step/floor':>11s} "
          f"{'stand-in/floor':>15s} {'loss beyond stand-in':>21s}")
    rows = []
    for name in args.configs:
        times = {"step": [], "stand_in": []}
        for _ in range(args.repeats):  # interleaved: both see the same machine
            times["step"].append(step_time(name, benchmark, stand_in=False))
            times["stand_in"].append(step_time(name, benchmark, stand_in=True))
        step, stand_in = min(times["step"]), min(times["stand_in"])
        floor, _ = floor_step(CONFIGS[name], benchmark, event_log(CONFIGS[name], benchmark),
                              args.repeats)
        row = {"config": name, "settings": CONFIGS[name], "threads": args.threads,
               "step_us": step * 1e6, "stand_in_us": stand_in * 1e6, "floor_us": floor * 1e6,
               "step_ratio": step / floor, "stand_in_ratio": stand_in / floor,
               "loss_beyond_stand_in_us": (step - stand_in) * 1e6,
               "budget_at_1_5x_us": (1.5 * floor - stand_in) * 1e6}
        rows.append(row)
        print(f"{name:6s} {step * 1e6:7.1f} {stand_in * 1e6:9.1f} {floor * 1e6:7.1f} "
              f"{step / floor:11.2f} {stand_in / floor:15.2f} {(step - stand_in) * 1e6:21.1f}"
              f"   (1.5x leaves {row['budget_at_1_5x_us']:.0f} us for it)", flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {"torch": torch.__version__, "python": sys.version.split()[0], "rows": rows}
        args.out.write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

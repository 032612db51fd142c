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
* **closed form**: the method's loss, as the configuration measured here has it (GMS
  off), with its gradient with respect to the logits written out and made without
  autograd (a handful of operations on the logits under ``no_grad``), then one backward
  pass from the logits: the cheapest form of the loss tried. Not the methods' code: a
  second form of each loss, which would have to follow GMS's masked one, for a step that
  stays over the line; ``tests/test_loss_stand_in.py`` holds its update to the method's;
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


def minus_one_hot(gradient, labels, value: float) -> None:
    """Add ``value`` at each row's label (the one-hot part of a cross-entropy's gradient)."""
    gradient.scatter_add_(1, labels.unsqueeze(1),
                          gradient.new_full((len(labels), 1), value))


def lode_closed_form(method, raw_inputs, labels):
    """LODE's step with its loss's gradient written out (GMS off). Stream rows of task t:
    C CE over the task's classes + w (LSE_seen - LSE_task), w = rho new / old, whose
    gradient is (w P_seen + (C - w) P_task - C onehot) / n on the classes seen; replay
    rows: (P_seen - onehot) / r."""
    assert not method.gms_rule.enabled, "the closed form is written for GMS off"
    logits = method.net(method.prepare(raw_inputs))
    if method.task == 0 or method.buffer.is_empty():
        loss = F.cross_entropy(logits, labels)
        method.update(loss)
        method.remember(raw_inputs, labels)
        return loss.detach()
    offsets, task = method.layout.task_offsets, method.task
    old, seen = offsets[task], offsets[task + 1]
    c = method.settings.lode_c
    w = method.settings.lode_rho * (seen - old) / old
    replay = method.buffer.sample(method.config.minibatch_size)
    replay_logits = method.net(method.prepare(replay.examples))
    n, r = len(labels), len(replay.labels)
    with torch.no_grad():
        log_seen = F.log_softmax(logits[:, :seen], 1)
        log_task = F.log_softmax(logits[:, old:seen], 1)
        log_new = log_seen[:, old:].logsumexp(1)  # log P(new) = LSE_task - LSE_seen
        log_replay = F.log_softmax(replay_logits[:, :seen], 1)
        loss = (-c * log_task.gather(1, (labels - old).unsqueeze(1)).mean()
                - w * log_new.mean() - log_replay.gather(1, replay.labels.unsqueeze(1)).mean())
        gradient = torch.zeros_like(logits)
        torch.mul(log_seen.exp_(), w / n, out=gradient[:, :seen])
        gradient[:, old:seen].add_(log_task.exp_(), alpha=(c - w) / n)
        minus_one_hot(gradient, labels, -c / n)
        replay_gradient = torch.zeros_like(replay_logits)
        torch.mul(log_replay.exp_(), 1 / r, out=replay_gradient[:, :seen])
        minus_one_hot(replay_gradient, replay.labels, -1 / r)
    method.optimizer.zero_grad()
    torch.autograd.backward((logits, replay_logits), (gradient, replay_gradient))
    method.optimizer.step()
    method.remember(raw_inputs, labels)
    return loss


def bic_closed_form(method, raw_inputs, labels):
    """BiC's step with its loss's gradient written out (GMS off): (1 - s) CE over the
    classes seen - s T^2 mean(sum p_old log softmax(z_past / T)), whose gradient is
    ((1 - s) (P_seen - onehot) + s T (softmax(z_past / T) - p_old)) / n."""
    assert not method.gms_rule.enabled, "the closed form is written for GMS off"
    inputs = method.prepare(raw_inputs)
    logits = method.net(inputs)
    offsets, task = method.layout.task_offsets, method.task
    past, seen = offsets[task], offsets[task + 1]
    if method.old_net is None or past == 0:
        loss = method.class_loss(logits, labels, seen)
        method.update(loss)
        return loss.detach()
    n, temp = len(labels), method.settings.temp
    share = past / seen if method.settings.bic_lambda == "paper" else 1 / (task + 1)
    with torch.no_grad():
        old = method.corrected(method.old_net(inputs), method.old_bias, task - 1)[:, :past]
        targets = F.softmax(old / temp, 1)
        log_seen = F.log_softmax(logits[:, :seen], 1)
        log_past = F.log_softmax(logits[:, :past] / temp, 1)
        loss = (-(1 - share) * log_seen.gather(1, labels.unsqueeze(1)).mean()
                - share * temp * temp * (log_past * targets).sum(1).mean())
        gradient = torch.zeros_like(logits)
        torch.mul(log_seen.exp_(), (1 - share) / n, out=gradient[:, :seen])
        minus_one_hot(gradient, labels, -(1 - share) / n)
        gradient[:, :past].add_(log_past.exp_().sub_(targets), alpha=share * temp / n)
    method.optimizer.zero_grad()
    logits.backward(gradient)
    method.optimizer.step()
    return loss


STAND_INS = {"LODE": lode_stand_in, "BiC": bic_stand_in}
CLOSED_FORMS = {"LODE": lode_closed_form, "BiC": bic_closed_form}
VARIANTS = ("step", "stand_in", "closed_form")


def with_variant(method, name: str, variant: str):
    """``method`` with its ``observe`` replaced by the variant's (``step``: its own)."""
    if variant != "step":
        replacement = (STAND_INS if variant == "stand_in" else CLOSED_FORMS)[name]
        method.observe = lambda raw_inputs, labels: replacement(method, raw_inputs, labels)
    return method


def step_time(name: str, benchmark, variant: str) -> float:
    """Seconds per step of one pass, with the method's own step or a variant of it."""
    _, _, method = build(CONFIGS[name], benchmark)
    spent, steps = one_pass(with_variant(method, name, variant), benchmark, 0)
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
    print(f"{'':6s} {'step':>7s} {'stand-in':>9s} {'closed form':>12s} {'floor':>7s} "
          f"{'step/floor':>11s} {'stand-in/floor':>15s} {'closed/floor':>13s} "
          f"{'loss beyond stand-in':>21s}")
    rows = []
    for name in args.configs:
        times = {variant: [] for variant in VARIANTS}
        for _ in range(args.repeats):  # interleaved: all see the same machine
            for variant in VARIANTS:
                times[variant].append(step_time(name, benchmark, variant))
        step, stand_in, closed = (min(times[variant]) for variant in VARIANTS)
        floor, _ = floor_step(CONFIGS[name], benchmark, event_log(CONFIGS[name], benchmark),
                              args.repeats)
        row = {"config": name, "settings": CONFIGS[name], "threads": args.threads,
               "step_us": step * 1e6, "stand_in_us": stand_in * 1e6,
               "closed_form_us": closed * 1e6, "floor_us": floor * 1e6,
               "step_ratio": step / floor, "stand_in_ratio": stand_in / floor,
               "closed_form_ratio": closed / floor,
               "loss_beyond_stand_in_us": (step - stand_in) * 1e6,
               "budget_at_1_5x_us": (1.5 * floor - stand_in) * 1e6}
        rows.append(row)
        print(f"{name:6s} {step * 1e6:7.1f} {stand_in * 1e6:9.1f} {closed * 1e6:12.1f} "
              f"{floor * 1e6:7.1f} {step / floor:11.2f} {stand_in / floor:15.2f} "
              f"{closed / floor:13.2f} {(step - stand_in) * 1e6:21.1f}"
              f"   (1.5x leaves {row['budget_at_1_5x_us']:.0f} us for it)", flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {"torch": torch.__version__, "python": sys.version.split()[0], "rows": rows}
        args.out.write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Avalanche's replay with and without GMSCriterion, beside ``replaymask run --model er``:
S-MNIST, the DER paper's protocol, same machine, one fresh process at a time.

    python benchmarks/vs_avalanche.py [--seeds 0 1 2 3 4] [--lrs 0.1 0.01]
        [--avalanche-threads 1 0] [--data DIR] [--out results/vs_avalanche.json]

Avalanche (avalanche-lib, installed by ``scripts/install.sh``): its own ``SplitMNIST``
(5 experiences of 2 classes, classes in the natural order), read from IDX files that the
script writes from replaymask's copy of MNIST, so both tools train on the same bytes;
its input is pixels / 255, as in the protocol (``SplitMNIST``'s default would also
normalise). ``Naive`` with ``ReplayPlugin(mem_size=200)``, SGD, batch 10, 1 epoch, the
model replaymask's S-MNIST MLP (784-100-100-10, the same initialisation), Avalanche's
default evaluator (accuracy and loss metrics, its interactive logger), evaluating the
test experiences seen so far after each experience, as replaymask does. The criterion is
``CrossEntropyLoss()`` or ``GMSCriterion()``. ReplayPlugin's buffer minibatch has the
stream minibatch's size (10) and is concatenated to it, one mean cross-entropy over 20
rows, as replaymask's ER does (``--minibatch-size 10``).

replaymask: ``replaymask run --model er --buffer-size 200 --batch-size 10
--minibatch-size 10 --n-epochs 1 [--gms] --lr LR --seed S``.

Both tools' final Class-IL and Task-IL are computed by the same function
(``replaymask.core.evaluation.evaluate``: the mean over the 5 tasks of each task's test
accuracy after the last task; Task-IL takes the argmax within the sample's own task). Wall
time is a fresh process from start to exit; for Avalanche, less the time of that final
scoring (reported apart), which is ours, not Avalanche's. Each learning rate in ``--lrs``
runs for every tool and seed; Avalanche at each of ``--avalanche-threads`` (torch threads;
0: torch's own choice; replaymask sets 1 itself for this benchmark), and once more, at the
first learning rate and thread setting, without its metrics and logger
(``EvaluationPlugin(loggers=[])``), to show what they cost. An Avalanche run also reports
its phases: imports, building the benchmark, ``train`` (and within it the time the loop
waits for each minibatch from the data loader) and ``eval``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from vs_mammoth import timed, write_idx_data

REPO = Path(__file__).resolve().parents[1]
BUFFER, BATCH, TASKS = 200, 10, 5


def avalanche_child(args) -> int:
    """One Avalanche run in this process; writes its report to ``args.report``."""
    entered = time.perf_counter()
    sys.path.insert(0, str(REPO))
    from tests.torchvision_ops import declare_torchvision_ops_if_they_cannot_load

    declare_torchvision_ops_if_they_cannot_load()  # a CPU torch beside a CUDA torchvision
    import numpy as np
    import torch
    from avalanche.benchmarks.classic import SplitMNIST
    from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin, SupervisedPlugin
    from avalanche.training.supervised import Naive

    from replaymask.core.backbones import MLP
    from replaymask.integrations.avalanche import GMSCriterion

    imported = time.perf_counter()
    benchmark = SplitMNIST(n_experiences=TASKS, fixed_class_order=list(range(10)),
                           dataset_root=args.data / "MNIST", train_transform=torch.nn.Identity(),
                           eval_transform=torch.nn.Identity())
    if args.warm_up:
        return 0
    loaded = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    class DataWait(SupervisedPlugin):
        """Time the training loop waits for each minibatch: from the end of one iteration
        (or the epoch's start) to the start of the next, which is the data loader's turn."""

        seconds = 0.0

        def before_training_epoch(self, strategy, **kwargs):
            self.mark = time.perf_counter()

        def before_training_iteration(self, strategy, **kwargs):
            self.seconds += time.perf_counter() - self.mark

        def after_training_iteration(self, strategy, **kwargs):
            self.mark = time.perf_counter()

    data_wait = DataWait()
    model = MLP()
    extra = {"evaluator": EvaluationPlugin(loggers=[])} if args.lean else {}
    strategy = Naive(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=args.lr),
                     criterion=GMSCriterion() if args.gms else torch.nn.CrossEntropyLoss(),
                     plugins=[ReplayPlugin(mem_size=BUFFER), data_wait], train_mb_size=BATCH,
                     train_epochs=1, eval_mb_size=2048, **extra)
    train_s = eval_s = 0.0
    for experience in benchmark.train_stream:
        start = time.perf_counter()
        strategy.train(experience)
        train_s += time.perf_counter() - start
        start = time.perf_counter()
        metrics = strategy.eval(benchmark.test_stream[:experience.current_experience + 1])
        eval_s += time.perf_counter() - start

    start = time.perf_counter()
    from replaymask.core.evaluation import evaluate
    from replaymask.data.benchmarks import load_benchmark

    ours = load_benchmark("seq-mnist", download=False)
    class_il, task_il = evaluate(model, ours, list(range(TASKS)), [TASKS - 1] * TASKS)
    report = {"class_il": statistics.mean(class_il), "task_il": statistics.mean(task_il),
              "class_il_per_task": class_il, "task_il_per_task": task_il,
              "import_s": imported - entered, "benchmark_s": loaded - imported,
              "train_s": train_s, "data_wait_s": data_wait.seconds, "eval_s": eval_s,
              "threads": torch.get_num_threads(),
              "avalanche_stream_accuracy": None}
    stream_accuracy = metrics.get("Top1_Acc_Stream/eval_phase/test_stream/Task000")
    if stream_accuracy is not None:  # Avalanche's own figure, pooled over the test set
        report["avalanche_stream_accuracy"] = 100 * stream_accuracy
    report["scoring_s"] = time.perf_counter() - start
    args.report.write_text(json.dumps(report))
    return 0


def avalanche_run(args, seed: int, lr: float, gms: bool, threads: int, scratch: Path,
                  lean: bool = False) -> dict:
    report = scratch / "avalanche.json"
    report.unlink(missing_ok=True)
    command = [sys.executable, __file__, "--avalanche-child", "--seed", str(seed), "--lr",
               str(lr), "--data", str(args.data), "--report", str(report)]
    command += ["--gms"] if gms else []
    command += ["--threads", str(threads)] if threads else []
    command += ["--lean"] if lean else []
    wall, rss, code = timed(command, REPO, scratch / "avalanche.log")
    if code != 0 or not report.is_file():
        tail = (scratch / "avalanche.log").read_text(errors="replace").strip().splitlines()
        sys.exit(f"vs_avalanche: the Avalanche run failed (exit {code}): "
                 f"{tail[-1] if tail else 'no output'}")
    result = json.loads(report.read_text())
    return {"wall_s": wall - result["scoring_s"], "peak_rss_mib": rss, **result}


def ours_run(seed: int, lr: float, gms: bool, scratch: Path) -> dict:
    out = scratch / "ours"
    command = [sys.executable, "-m", "replaymask", "run", "--model", "er", "--dataset",
               "seq-mnist", "--buffer-size", str(BUFFER), "--batch-size", str(BATCH),
               "--minibatch-size", str(BATCH), "--n-epochs", "1", "--lr", str(lr), "--seed",
               str(seed), "--no-progress", "--no-download", "--out", str(out)]
    command += ["--gms"] if gms else []
    wall, rss, code = timed(command, REPO, scratch / "ours.log")
    if code != 0:
        tail = (scratch / "ours.log").read_text(errors="replace").strip().splitlines()
        sys.exit(f"vs_avalanche: replaymask failed (exit {code}): "
                 f"{tail[-1] if tail else 'no output'}")
    result = json.loads((out / "result.json").read_text())
    return {"wall_s": wall, "peak_rss_mib": rss,
            "class_il": result["metrics"]["class_il"]["average_accuracy"],
            "task_il": result["metrics"]["task_il"]["average_accuracy"],
            "class_il_per_task": result["accuracy_matrix"]["class_il"][-1],
            "task_il_per_task": result["accuracy_matrix"]["task_il"][-1],
            "train_and_eval_s": result["wall_time_s"]}


def threads_label(threads: int) -> str:
    return "torch's default threads" if not threads else f"{threads} thread" + (
        "s" if threads > 1 else "")


def show(record: dict) -> None:
    print(f"seed {record['seed']}  {record['variant']:58s} {record['wall_s']:7.2f} s  "
          f"Class-IL {record['class_il']:6.2f}  Task-IL {record['task_il']:6.2f}", flush=True)


def sweeps_running() -> bool:
    found = subprocess.run(["pgrep", "-f", "replaymask sweep"], capture_output=True, text=True)
    return bool(found.stdout.strip())


def versions() -> dict:
    def output(command):
        try:
            return subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "unknown"
    from importlib.metadata import version

    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "replaymask_commit": output(["git", "rev-parse", "HEAD"]),
            "torch": version("torch"), "avalanche_lib": version("avalanche-lib"),
            "torchvision": version("torchvision"), "python": sys.version.split()[0],
            "cpu": cpu, "cores": os.cpu_count()}


def summarize(runs: list[dict]) -> list[dict]:
    rows = []
    for variant in dict.fromkeys(run["variant"] for run in runs):
        chosen = [run for run in runs if run["variant"] == variant]
        row = {"variant": variant, "runs": len(chosen),
               "wall_s_median": statistics.median(run["wall_s"] for run in chosen),
               "peak_rss_mib_max": max(run["peak_rss_mib"] for run in chosen)}
        for metric in ("class_il", "task_il"):
            values = [run[metric] for run in chosen]
            row[f"{metric}_mean"] = statistics.mean(values)
            row[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        rows.append(row)
        print(f"{variant:58s} Class-IL {row['class_il_mean']:6.2f} ± {row['class_il_std']:5.2f}"
              f"  Task-IL {row['task_il_mean']:6.2f} ± {row['task_il_std']:5.2f}"
              f"  wall {row['wall_s_median']:6.2f} s", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--lrs", nargs="+", type=float, default=[0.1, 0.01])
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "vs_avalanche",
                        help="where the IDX files go")
    parser.add_argument("--avalanche-threads", nargs="+", type=int, default=[1],
                        help="torch threads in the Avalanche runs, each a variant; 0: torch's "
                             "choice (default: 1, what replaymask sets for this benchmark)")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "vs_avalanche.json")
    parser.add_argument("--avalanche-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--warm-up", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--lr", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--gms", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--lean", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.data = args.data.resolve()
    if args.avalanche_child:
        return avalanche_child(args)

    write_idx_data(args.data)
    runs = []
    started = {"sweeps_running": sweeps_running(), "load_average": os.getloadavg()}
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        print("warm-up (untimed): Avalanche's import and data, one replaymask run", flush=True)
        subprocess.run([sys.executable, __file__, "--avalanche-child", "--warm-up", "--data",
                        str(args.data)], cwd=REPO, check=True, capture_output=True)
        ours_run(0, args.lrs[0], False, scratch)
        for seed in args.seeds:
            for lr in args.lrs:
                for tool, threads in [("avalanche", t) for t in args.avalanche_threads] + [
                        ("replaymask", None)]:
                    for gms in (False, True):
                        name = (f"avalanche Naive+Replay{' +GMS' if gms else ''} lr {lr:g}, "
                                f"{threads_label(threads)}" if tool == "avalanche" else
                                f"replaymask er{' --gms' if gms else ''} lr {lr:g}")
                        record = (avalanche_run(args, seed, lr, gms, threads, scratch)
                                  if tool == "avalanche" else ours_run(seed, lr, gms, scratch))
                        record = {"variant": name, "tool": tool, "gms": gms, "lr": lr,
                                  "seed": seed, **record}
                        runs.append(record)
                        show(record)
            for gms in (False, True):  # Avalanche without its metrics and logger
                name = (f"avalanche Naive+Replay{' +GMS' if gms else ''} lr {args.lrs[0]:g}, "
                        f"{threads_label(args.avalanche_threads[0])}, no metrics")
                record = avalanche_run(args, seed, args.lrs[0], gms, args.avalanche_threads[0],
                                       scratch, lean=True)
                runs.append({"variant": name, "tool": "avalanche", "gms": gms,
                             "lr": args.lrs[0], "seed": seed, **record})
                show(runs[-1])
    finished = {"sweeps_running": sweeps_running(), "load_average": os.getloadavg()}
    print()
    summary = summarize(runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"versions": versions(), "started": started,
                                    "finished": finished, "summary": summary, "runs": runs},
                                   indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""replaymask and Mammoth side by side: S-MNIST, same machine, same data, one process at a time.

    python benchmarks/vs_mammoth.py --mammoth DIR --mammoth-python PYTHON \\
        [--models er derpp] [--seeds 0 1 2] [--data DIR] [--out results/vs_mammoth.json]

DIR is a checkout of aimagelab/mammoth that runs offline with PYTHON (see "Mammoth
offline" in BENCHMARKS.md); nothing of it is modified. Before timing, the script writes
MNIST as IDX files (the layout torchvision reads, ``DATA/MNIST/MNIST/raw`` and
``DATA/MNIST/MyMNIST``) from replaymask's own copy of the data, so both tools train on
the same bytes, and runs each tool once untimed (file caches, our array cache).

For each model and seed, in turn: Mammoth as a user starts it (its default data-loader
workers), Mammoth with ``--num_workers 0``, then ``replaymask run`` with its defaults.
Every run is a fresh process; it records wall time (start to exit), the peak resident
memory of the largest process (``ru_maxrss`` of the child and its children), and the
final Class-IL and Task-IL accuracies each tool prints. The protocol is the DER paper's:
batch 10, 1 epoch, buffer 200; ER lr 0.01, replay 10; DER++ lr 0.03, alpha 0.2, beta 1.
Mammoth at e75a491 sets the replay batch to the stream batch whenever ``--batch_size``
is given (S-MNIST's batch of 10 needs it: Mammoth's default is 64), so its DER++ replays
10; replaymask's DER++ is timed both with
replay 10 (the same arithmetic; the ratio is taken against this) and with the DER paper's
128 (our default). Prints medians and ratios, and writes every run to ``--out``.

**The methods mode** (``--methods [agem fdr icarl gem gdumb gss bic hal mer]``; issue
19): each rehearsal method that both tools have, S-MNIST, at ``--buffers`` (200, and 500
where the DER paper has arguments for it), the given seeds, one process at a time: Mammoth
with ``--num_workers 0``, then ``replaymask run``, with the same hyper-parameters: the DER
paper's S-MNIST arguments (Mammoth's ``utils/best_args.py``) as far as Mammoth e75a491 can
run them, else its defaults (``METHODS`` below says which, and where the replay batch had
to follow Mammoth's), and the DER paper's own replay batch on our side as a variant. It
writes one record per method and buffer to ``--out`` (default
``results/vs_mammoth_methods.json``): both tools' command lines, the final Class-IL and
Task-IL average accuracy of each seed, the median wall time, the commits and the machine.
The file is written after every run and read at start: runs already in it are skipped (so
an interrupted session resumes); a record whose command lines set other values is kept
whole under ``earlier_arguments`` and started afresh. A Mammoth run longer than
``--mammoth-timeout`` (per method; MER: 40 minutes) is stopped and recorded as such, with
the accuracies it had printed after each task so far (every run records them:
``after_each_task``, the average over the tasks seen after each task), and that method's
other Mammoth seeds are not run. These runs are about accuracy: their wall times are of
whatever else the machine was running.

**The speed table** (``--methods ... --speed``): the first of ``--seeds`` for each method
in both tools, Mammoth then replaymask, each run started only when the 1-minute load
average is under 1 (nothing else running), wall time and peak memory into the record's
``speed``; printed as the Markdown table of BENCHMARKS.md section 3.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ACCURACY = re.compile(r"Accuracy for (\d+) task\(s\):\s+\[Class-IL\]:\s+([\d.]+) %"
                      r"\s+\[Task-IL\]:\s+([\d.]+) %")
PROTOCOL = {  # name: (Mammoth's arguments, replaymask's arguments)
    "er": (["--model", "er", "--lr", "0.01", "--minibatch_size", "10"],
           ["--model", "er", "--lr", "0.01", "--minibatch-size", "10"]),
    "derpp": (["--model", "derpp", "--lr", "0.03", "--minibatch_size", "10", "--alpha", "0.2",
               "--beta", "1.0"],
              ["--model", "derpp", "--lr", "0.03", "--minibatch-size", "10", "--alpha", "0.2",
               "--beta", "1.0"]),
}
COMMON_MAMMOTH = ["--dataset", "seq-mnist", "--buffer_size", "200", "--batch_size", "10",
                  "--n_epochs", "1"]
COMMON_OURS = ["--dataset", "seq-mnist", "--buffer-size", "200", "--batch-size", "10",
               "--n-epochs", "1", "--no-progress", "--no-download"]


def write_idx_data(data: Path) -> None:
    """MNIST as the four IDX files torchvision's MNIST reads, from replaymask's source."""
    import numpy as np

    from replaymask.data.mnist import load_image_data

    raw = data / "MNIST" / "MNIST" / "raw"
    if raw.is_dir() and len(list(raw.glob("*-ubyte"))) == 4:
        return
    source = load_image_data("mnist", download=False)
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, split in (("train", "train"), ("t10k", "test")):
        images = getattr(source, f"{split}_images").numpy().reshape(-1, 28, 28)
        labels = getattr(source, f"{split}_labels").numpy().astype(np.uint8)
        with open(raw / f"{prefix}-images-idx3-ubyte", "wb") as file:
            file.write((2051).to_bytes(4, "big") + len(images).to_bytes(4, "big")
                       + (28).to_bytes(4, "big") + (28).to_bytes(4, "big") + images.tobytes())
        with open(raw / f"{prefix}-labels-idx1-ubyte", "wb") as file:
            file.write((2049).to_bytes(4, "big") + len(labels).to_bytes(4, "big")
                       + labels.tobytes())
    link = data / "MNIST" / "MyMNIST"  # Mammoth's MNIST subclass looks in its own name
    if not link.exists():
        link.symlink_to("MNIST")


def timed(command: list[str], cwd: Path, log: Path, timeout: float | None = None,
          env: dict | None = None) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MiB, exit code) of one fresh process; past ``timeout``
    seconds it is stopped (its own process group, SIGTERM) and the code is None."""
    with open(log, "wb") as output:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=timeout is not None, env=env)
        while True:
            pid, status, usage = os.wait4(process.pid, 0 if timeout is None else os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - start > timeout:
                os.killpg(process.pid, signal.SIGTERM)
                _, status, usage = os.wait4(process.pid, 0)
                return time.perf_counter() - start, usage.ru_maxrss / 1024, None
            time.sleep(1.0)
        wall = time.perf_counter() - start
    return wall, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def mammoth_run(args, model: str, seed: int, workers: int | None, scratch: Path) -> dict:
    command = [args.mammoth_python, "main.py", *PROTOCOL[model][0], *COMMON_MAMMOTH,
               "--seed", str(seed), "--base_path", f"{args.data}/"]
    if workers is not None:
        command += ["--num_workers", str(workers)]
    log = scratch / "mammoth.log"
    wall, rss, code = timed(command, args.mammoth, log)
    found = ACCURACY.findall(log.read_text(errors="replace"))
    if code != 0 or not found:
        sys.exit(f"vs_mammoth: Mammoth failed (exit {code}); its output is in {log}")
    tasks, class_il, task_il = found[-1]
    return {"wall_s": wall, "peak_rss_mib": rss, "class_il": float(class_il),
            "task_il": float(task_il), "tasks": int(tasks)}


def ours_run(model: str, seed: int, scratch: Path, extra: list[str]) -> dict:
    out = scratch / "ours"
    command = [sys.executable, "-m", "replaymask", "run", *PROTOCOL[model][1], *COMMON_OURS,
               "--seed", str(seed), "--out", str(out), *extra]
    wall, rss, code = timed(command, REPO, scratch / "ours.log")
    if code != 0:
        sys.exit(f"vs_mammoth: replaymask failed: {(scratch / 'ours.log').read_text()[-400:]}")
    result = json.loads((out / "result.json").read_text())
    return {"wall_s": wall, "peak_rss_mib": rss,
            "class_il": result["metrics"]["class_il"]["average_accuracy"],
            "task_il": result["metrics"]["task_il"]["average_accuracy"],
            "tasks": len(result["accuracy_matrix"]["class_il"])}


def versions(args) -> dict:
    def output(command, cwd=None):
        try:
            return subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "unknown"
    torch_of = [None, "-c", "import torch; print(torch.__version__)"]
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mammoth_commit": output(["git", "rev-parse", "HEAD"], args.mammoth),
        "replaymask_commit": output(["git", "rev-parse", "HEAD"], REPO),
        "torch_mammoth": output([args.mammoth_python, *torch_of[1:]]),
        "torch_replaymask": output([sys.executable, *torch_of[1:]]),
        "python": sys.version.split()[0], "cpu": cpu, "cores": os.cpu_count(),
    }


# --- the methods mode (issue 19) -------------------------------------------------------

METHOD_ORDER = ("agem", "fdr", "icarl", "gem", "gdumb", "gss", "bic", "hal", "mer")
METHOD_BUFFERS = (200, 500)
# The arguments each method runs with in both tools: the DER paper's for S-MNIST (Mammoth's
# utils/best_args.py, the same from its first commit to e75a491) where it has them, else
# Mammoth's defaults (BiC; GDumb: its paper's). Mammoth e75a491 runs them with one change
# it cannot avoid: given --batch_size, its main.py (extend_args) sets the replay batch to
# the stream batch, and MER forces the stream batch to 1; so A-GEM replays 10 (not 128),
# GSS 128 (not 10) and MER 1 (not 128) there. replaymask is given Mammoth's effective
# replay batch (the same arithmetic); the DER paper's own replay batch runs as a variant.
# Keys are the settings' names (Mammoth's flag: --name; replaymask's: --name-with-dashes).
METHODS = {
    "agem": {"buffers": {b: {"lr": 0.1, "batch_size": 10, "minibatch_size": 10}
                         for b in (200, 500)},
             # Mammoth's memory: one stream batch (10 items) per task
             "ours_only": {"agem_memory": "batch"},
             # the DER paper's: 128 replayed, buffer_size // tasks random items per task
             "paper": {"minibatch_size": 128, "agem_memory": "per_task"}},
    "fdr": {"buffers": {200: {"lr": 0.03, "alpha": 1.0, "batch_size": 128,
                              "minibatch_size": 128},
                        500: {"lr": 0.1, "alpha": 1.0, "batch_size": 128,
                              "minibatch_size": 128}}},
    "icarl": {"buffers": {b: {"lr": 0.1, "batch_size": 10, "minibatch_size": 10, "opt_wd": 0.0}
                          for b in (200, 500)}},
    "gem": {"buffers": {200: {"lr": 0.01, "gamma": 1.0, "batch_size": 10},
                        500: {"lr": 0.03, "gamma": 0.5, "batch_size": 10}}},
    "gdumb": {"buffers": {200: {"maxlr": 0.05, "minlr": 0.0005, "fitting_epochs": 256,
                                "cutmix_alpha": 1.0, "batch_size": 10}},
              # Mammoth's optimiser given our (the paper's) momentum and weight decay
              "mammoth_only": {"lr": 0, "optim_mom": 0.9, "optim_wd": 1e-6},
              # Mammoth fits once, after the last task; ours after each (5 fits): the speed
              # table times ours as Mammoth runs it
              "variants": {"replaymask, fitted after the last task only (Mammoth's)":
                           {"fit_after": "last_task"}},
              "speed_with": {"fit_after": "last_task"}},
    "gss": {"buffers": {b: {"lr": 0.1, "batch_size": 128, "minibatch_size": 128,
                            "gss_minibatch_size": 10, "batch_num": 1} for b in (200, 500)},
            "paper": {"minibatch_size": 10}},
    "bic": {"buffers": {200: {"lr": 0.1, "batch_size": 10, "bic_epochs": 250, "temp": 2.0,
                              "valset_split": 0.1}},
            # the distillation weight of Mammoth's code (ours: the paper's)
            "variants": {"replaymask, Mammoth's lambda": {"bic_lambda": "mammoth"}}},
    "hal": {"buffers": {200: {"lr": 0.1, "batch_size": 128, "minibatch_size": 128,
                              "hal_lambda": 0.1, "beta": 0.7, "gamma": 0.5},
                        500: {"lr": 0.1, "batch_size": 128, "minibatch_size": 128,
                              "hal_lambda": 0.1, "beta": 0.2, "gamma": 0.5}}},
    "mer": {"buffers": {b: {"lr": 0.1, "batch_size": 1, "minibatch_size": 1, "beta": 1.0,
                            "gamma": 1.0, "batch_num": 1} for b in (200, 500)},
            "paper": {"minibatch_size": 128}},
}


# The DER paper's S-MNIST numbers (Table 2, 10 seeds; Class-IL, Task-IL), as its authors'
# repository printed them (aimagelab/mammoth README.md at its first commit, 7ab9db9).
PUBLISHED_SOURCE = "DER paper, Table 2 (aimagelab/mammoth README.md at 7ab9db9)"
PUBLISHED = {
    "agem": {200: (45.72, 98.61), 500: (46.66, 98.93)},
    "fdr": {200: (79.43, 97.66), 500: (85.87, 97.54)},
    "icarl": {200: (70.51, 98.28), 500: (70.10, 98.32)},
    "gem": {200: (80.11, 97.78), 500: (85.99, 98.71)},
    "gss": {200: (38.90, 95.02), 500: (49.76, 97.71)},
    "hal": {200: (84.70, 97.96), 500: (87.21, 98.03)},
    "mer": {200: (81.47, 98.05), 500: (88.35, 98.43)},
}


def published(method: str, buffer: int) -> dict | None:
    """The DER paper's number for ``method`` at ``buffer`` and which of our runs are at its
    arguments (the variant where Mammoth's replay batch differs from the paper's)."""
    numbers = PUBLISHED.get(method, {}).get(buffer)
    if numbers is None:
        return None
    variants = method_arguments(method, buffer)[2]
    return {"source": PUBLISHED_SOURCE, "class_il": numbers[0], "task_il": numbers[1],
            "seeds": 10, "compared_with": next(iter(variants), "replaymask")}


def method_arguments(method: str, buffer: int) -> tuple[list[str], list[str], dict]:
    """(Mammoth's method arguments, replaymask's, {variant name: replaymask's}) at
    ``buffer``: the same settings rendered as each tool's flags."""
    spec = METHODS[method]
    settings = spec["buffers"][buffer]

    def flags(values: dict, dashes: bool) -> list[str]:
        words = ["--model", method]
        for name, value in values.items():
            words += ["--" + (name.replace("_", "-") if dashes else name), str(value)]
        return words
    mammoth = flags({**settings, **spec.get("mammoth_only", {})}, dashes=False)
    ours = flags({**settings, **spec.get("ours_only", {})}, dashes=True)
    variants = {}
    if "paper" in spec:
        paper = {**settings, **spec.get("ours_only", {}), **spec["paper"]}
        name = "replaymask, the DER paper's " + ", ".join(
            f"{key} {value}" for key, value in spec["paper"].items())
        variants[name] = flags(paper, dashes=True)
    for name, changed in spec.get("variants", {}).items():
        variants[name] = flags({**settings, **spec.get("ours_only", {}), **changed},
                               dashes=True)
    return mammoth, ours, variants


MAMMOTH_TIMEOUT_S = {"mer": 40 * 60}
METHOD_NOTES = {
    "mer": "Mammoth at e75a491 forces MER's stream batch to 1, and, the batch size being set, "
           "its main.py (extend_args) sets the replay batch to it: its MER replays 1 item per "
           "step, not the DER paper's 128 (checked: its parsed arguments say minibatch_size 1 "
           "for --minibatch_size 128). replaymask runs the same arithmetic (replay 1), and "
           "the DER paper's 128 as a variant.",
    "gdumb": "Mammoth trains GDumb's network only after the last task, replaymask after every "
             "task: only the final accuracies (these) compare. Mammoth's memory is a "
             "reservoir, replaymask's the authors' greedy class-balanced sampler; traced: "
             "replaymask with a reservoir and CutMix gave 75.99 (seeds 0-2) beside Mammoth's "
             "76.29; see docs/vs-mammoth-methods.md.",
    "agem": "Mammoth's A-GEM memory is one stream batch (10 items) per task whatever "
            "--buffer_size says, and its reference gradient is of 10 of them (its main.py "
            "sets the replay batch to the stream batch); replaymask runs the same with "
            "--agem-memory batch --minibatch-size 10, and the DER paper's replay of 128 as a "
            "variant.",
    "gss": "Mammoth at e75a491 sets the replay batch to the stream batch (128) whenever "
           "--batch_size is given, whatever --minibatch_size says; replaymask runs the same "
           "(128), and the DER paper's 10 as a variant.",
    "bic": "No published S-MNIST arguments: Mammoth's defaults in both tools. Mammoth's "
           "distillation weight is 1 / (t + 1), the new classes' share; replaymask's is the "
           "paper's (earlier classes / classes seen, Wu et al. 2019, Eq. 3); the variant runs "
           "Mammoth's (--bic-lambda mammoth). Traced: Mammoth with the paper's weight gave "
           "74.11 (seed 0).",
    "fdr": "Mammoth's FDR parses --alpha and never uses it (its first commit, which made the "
           "DER paper's numbers, and e75a491): its distance step has weight 1 whatever the "
           "DER paper's row says (0.5 at buffer 200, 0.2 at 500); both tools run alpha 1.",
    "icarl": "Mammoth averages each class mean with the features of the horizontally "
             "mirrored memory images, on MNIST too; replaymask mirrors only where the "
             "benchmark's training augmentation does (CIFAR, TinyImageNet), so not on "
             "S-MNIST. Traced: Mammoth with the mirroring removed gave 74.54 (seed 0), "
             "replaymask with it added 64.97 (seeds 0-2); see docs/vs-mammoth-methods.md.",
}


def method_command_mammoth(args, method: str, buffer: int, seed: int) -> list[str]:
    specific = method_arguments(method, buffer)[0]
    return [args.mammoth_python, "main.py", *specific, "--dataset", "seq-mnist",
            "--buffer_size", str(buffer), "--n_epochs", "1", "--num_workers", "0",
            "--seed", str(seed), "--base_path", f"{args.data}/"]


def method_command_ours(specific: list[str], buffer: int, seed: int, out: Path) -> list[str]:
    return [sys.executable, "-m", "replaymask", "run", *specific, "--dataset", "seq-mnist",
            "--buffer-size", str(buffer), "--n-epochs", "1", "--no-progress",
            "--no-download", "--seed", str(seed), "--out", str(out)]


def shown(command: list[str]) -> str:
    """A command line as a user types it: the interpreter and the scratch paths named."""
    words = list(command)
    words[0] = "python"
    if "--out" in words:
        words[words.index("--out") + 1] = "OUT"
    if "--base_path" in words:
        words[words.index("--base_path") + 1] = "DATA/"
    return " ".join(words)


def run_method_mammoth(args, method: str, buffer: int, seed: int, scratch: Path) -> dict:
    command = method_command_mammoth(args, method, buffer, seed)
    log = scratch / f"mammoth-{method}-{seed}.log"
    timeout = args.mammoth_timeout.get(method)
    load = os.getloadavg()[0]
    wall, rss, code = timed(command, args.mammoth, log, timeout=timeout)
    found = ACCURACY.findall(log.read_text(errors="replace"))
    after = {int(tasks): (float(class_il), float(task_il)) for tasks, class_il, task_il in found}
    after_each_task = {"class_il": [after[k][0] for k in sorted(after)],
                       "task_il": [after[k][1] for k in sorted(after)]}
    if code is None:  # stopped: what it had printed so far
        return {"seed": seed, "timed_out": True, "wall_s": wall, "timeout_s": timeout,
                "load_before": load, "after_each_task": after_each_task}
    if code != 0 or not found:
        sys.exit(f"vs_mammoth: Mammoth failed (exit {code}); its output is in {log}:\n"
                 + log.read_text(errors="replace")[-1500:])
    tasks, class_il, task_il = found[-1]
    return {"seed": seed, "class_il": float(class_il), "task_il": float(task_il),
            "tasks": int(tasks), "wall_s": wall, "peak_rss_mib": rss, "load_before": load,
            "after_each_task": after_each_task}


def run_method_ours(specific: list[str], buffer: int, seed: int, scratch: Path) -> dict:
    out = scratch / "ours"
    log = scratch / "ours.log"
    load = os.getloadavg()[0]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(  # this checkout's code, always
        filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    wall, rss, code = timed(method_command_ours(specific, buffer, seed, out), REPO, log,
                            env=env)
    if code != 0:
        sys.exit(f"vs_mammoth: replaymask failed: {log.read_text()[-1500:]}")
    result = json.loads((out / "result.json").read_text())
    matrix = result["accuracy_matrix"]
    return {"seed": seed, "class_il": result["metrics"]["class_il"]["average_accuracy"],
            "task_il": result["metrics"]["task_il"]["average_accuracy"],
            "tasks": len(matrix["class_il"]), "wall_s": wall, "peak_rss_mib": rss,
            "load_before": load,
            "after_each_task": {key: [round(statistics.mean(row), 2) for row in matrix[key]]
                                for key in ("class_il", "task_il")}}


def tool_summary(runs: list[dict], seeds: list[int]) -> dict:
    """Per-seed lists (in the order of ``seeds``; seeds not run yet, or stopped, left out)
    and the median wall time of the finished runs."""
    by_seed = {run["seed"]: run for run in runs}
    done = [by_seed[seed] for seed in seeds if seed in by_seed
            and not by_seed[seed].get("timed_out")]
    summary = {"seeds": [run["seed"] for run in done],
               "class_il": [round(run["class_il"], 4) for run in done],
               "task_il": [round(run["task_il"], 4) for run in done],
               "median_wall_s": (round(statistics.median(run["wall_s"] for run in done), 2)
                                 if done else None),
               "runs": sorted(runs, key=lambda run: run["seed"])}
    stopped = [run["seed"] for run in runs if run.get("timed_out")]
    if stopped:
        summary["timed_out_seeds"] = stopped
    return summary


def source_commit() -> str:
    """The commit of replaymask's code that ran (the newest that touched src/), marked
    dirty if src/ has uncommitted changes."""
    def git(*words):
        try:
            return subprocess.run(["git", *words], cwd=REPO, capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""
    commit = git("log", "-1", "--format=%H", "--", "src") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--", "src") else "")


def same_arguments(first: dict, second: dict) -> bool:
    """Whether two records' command lines (per tool) set the same flags to the same values,
    in any order (numbers compared as numbers)."""
    def parsed(line: str) -> dict:
        words, flags, i = line.split(), {}, 0
        while i < len(words):
            if words[i].startswith("--"):
                value = words[i + 1] if i + 1 < len(words) and not \
                    words[i + 1].startswith("--") else True
                if value is not True and value.replace(".", "", 1).replace("e-", "", 1
                                                                           ).isdigit():
                    value = float(value)
                flags[words[i]] = value
                i += 1 if value is True else 2
            else:
                flags.setdefault("words", []).append(words[i])
                i += 1
        return flags
    return first.keys() == second.keys() and all(parsed(first[k]) == parsed(second[k])
                                                  for k in first)


def run_methods(args) -> int:
    info = versions(args)
    replaymask_commit = source_commit()
    records = json.loads(args.out.read_text()) if args.out.exists() else []
    machine = {"cores": info["cores"], "cpu": info["cpu"], "python": info["python"],
               "torch_mammoth": info["torch_mammoth"],
               "torch_replaymask": info["torch_replaymask"],
               "load": "shared: other jobs (a hyper-parameter search, a study sweep) may run "
                       "on the same cores, so these wall times are not a speed comparison "
                       "(load_before: the 1-minute load average as each run started); the "
                       "speed table is measured apart (--speed)"}

    def record_of(method: str, buffer: int, arguments: dict) -> dict:
        """The record of ``method`` at ``buffer``; one run with other arguments is kept
        whole under ``earlier_arguments`` and a fresh record started."""
        for record in records:
            if record["method"] == method and record["buffer_size"] == buffer:
                if record["arguments"] and not same_arguments(record["arguments"], arguments):
                    earlier = {key: record.pop(key) for key in
                               ("arguments", "replaymask", "mammoth", "replaymask_variants",
                                "date", "replaymask_commit", "seeds", "notes", "speed")
                               if key in record}
                    earlier["superseded"] = (
                        f"{info['date'][:10]}: other arguments; the record now runs the "
                        "DER paper's S-MNIST arguments as far as Mammoth can run them")
                    record.setdefault("earlier_arguments", []).append(earlier)
                    record.update({"arguments": {}, "replaymask": {}, "mammoth": {},
                                   "date": info["date"], "seeds": list(args.seeds),
                                   "replaymask_commit": replaymask_commit, "notes": []})
                return record
        record = {"method": method, "buffer_size": buffer, "seeds": list(args.seeds),
                  "dataset": "seq-mnist", "arguments": {}, "replaymask": {}, "mammoth": {},
                  "date": info["date"], "mammoth_commit": info["mammoth_commit"],
                  "replaymask_commit": replaymask_commit, "machine": machine, "notes": []}
        records.append(record)
        return record

    def save() -> None:
        records.sort(key=lambda r: (METHOD_ORDER.index(r["method"])
                                    if r["method"] in METHOD_ORDER else 99, r["buffer_size"]))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        temporary = args.out.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(records, indent=1) + "\n")
        temporary.replace(args.out)

    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        for method, buffer in ((m, b) for b in args.buffers for m in args.methods
                               if b in METHODS[m]["buffers"]):
            theirs, ours, variant_arguments = method_arguments(method, buffer)
            example = {"mammoth": shown(method_command_mammoth(args, method, buffer, 0)),
                       "replaymask": shown(method_command_ours(ours, buffer, 0, Path("OUT")))}
            arguments = {key: value.replace("--seed 0", "--seed SEED")
                         for key, value in example.items()}
            record = record_of(method, buffer, arguments)
            record["arguments"] = arguments
            if published(method, buffer):
                record["published"] = published(method, buffer)
            record["seeds"] = sorted(set(record["seeds"]) | set(args.seeds))
            note = METHOD_NOTES.get(method)
            if note and note not in record["notes"]:
                record["notes"].append(note)
            tools = {"mammoth": lambda seed, m=method, b=buffer: run_method_mammoth(
                         args, m, b, seed, scratch),
                     "replaymask": lambda seed, o=ours, b=buffer: run_method_ours(
                         o, b, seed, scratch)}
            variants = record.setdefault("replaymask_variants", []) if variant_arguments \
                else None
            for name, specific in variant_arguments.items():
                entry = next((v for v in variants if v["name"] == name), None)
                if entry is None:
                    entry = {"name": name}
                    variants.append(entry)
                entry["arguments"] = shown(method_command_ours(specific, buffer, 0, Path("OUT"))
                                           ).replace("--seed 0", "--seed SEED")
                tools[name] = lambda seed, o=specific, b=buffer: run_method_ours(
                    o, b, seed, scratch)
            if args.ours_again_before:
                set_aside_runs_before(record, args.ours_again_before, info["date"])
                save()
            for seed in args.seeds:
                for tool, run in tools.items():
                    if tool == "mammoth" and args.skip_mammoth:
                        continue
                    holder = record[tool] if tool in ("mammoth", "replaymask") else \
                        next(v for v in variants if v["name"] == tool)
                    runs = holder.get("runs", [])
                    if any(done["seed"] == seed for done in runs):
                        continue
                    if tool == "mammoth" and holder.get("timed_out_seeds"):
                        note = (f"Mammoth's {method} was not run for seed {seed}: the run of "
                                f"seed {holder['timed_out_seeds'][0]} was stopped at the "
                                "time limit.")
                        if note not in record["notes"]:
                            record["notes"].append(note)
                            save()
                        continue
                    print(f"{method:6s} {buffer:4d} seed {seed}  {tool:44s} ...", end=" ",
                          flush=True)
                    result = run(seed)
                    result["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
                    if tool != "mammoth":
                        result["replaymask_commit"] = replaymask_commit
                    holder.update(tool_summary(runs + [result], record["seeds"]))
                    if result.get("timed_out"):
                        print(f"stopped after {result['wall_s']:.0f} s", flush=True)
                        reached = len(result["after_each_task"]["class_il"])
                        note = (f"Mammoth's {method} run of seed {seed} was stopped after "
                                f"{result['wall_s'] / 60:.0f} minutes (the limit is "
                                f"{result['timeout_s'] / 60:.0f}), having evaluated "
                                f"{reached} of 5 tasks (its after_each_task); it has no "
                                "final accuracy.")
                        record["notes"].append(note)
                    else:
                        print(f"{result['wall_s']:7.1f} s  Class-IL {result['class_il']:6.2f}"
                              f"  Task-IL {result['task_il']:6.2f}", flush=True)
                    save()
    save()
    print_method_table(records)
    print(f"wrote {args.out}")
    return 0


def set_aside_runs_before(record: dict, revision: str, date: str) -> None:
    """Move the record's replaymask runs (its own and its variants') recorded at a commit
    that is not ``revision`` or a descendant of it to ``earlier_replaymask``, so that they
    are run again with the current code."""
    def before(run: dict) -> bool:
        commit = run.get("replaymask_commit")
        return commit is None or subprocess.run(
            ["git", "merge-base", "--is-ancestor", revision, commit], cwd=REPO,
            capture_output=True).returncode != 0
    holders = [("replaymask", record["replaymask"])]
    holders += [(variant["name"], variant) for variant in record.get("replaymask_variants", [])]
    for name, holder in holders:
        stale = [run for run in holder.get("runs", []) if before(run)]
        if not stale:
            continue
        record.setdefault("earlier_replaymask", []).append(
            {"name": name, "runs": stale, "superseded": f"{date[:10]}: run again after "
             f"{revision}, which changed the method's arithmetic"})
        kept = [run for run in holder["runs"] if not before(run)]
        for key in ("seeds", "class_il", "task_il", "median_wall_s", "runs"):
            holder.pop(key, None)
        if kept:
            holder.update(tool_summary(kept, record["seeds"]))


def wait_for_quiet(limit_s: float = 900.0, quiet: float = 1.0) -> float:
    """Wait (up to ``limit_s``) until the 1-minute load average is under ``quiet``; the
    load average as the run starts."""
    start = time.perf_counter()
    while os.getloadavg()[0] >= quiet and time.perf_counter() - start < limit_s:
        time.sleep(10)
    return os.getloadavg()[0]


def run_speed(args) -> int:
    """The speed table: for each method at each buffer, one seed in both tools, Mammoth then
    replaymask, each started when the machine is quiet, nothing else of ours running. The
    runs join the accuracy runs of that seed where those lack it."""
    # the records at today's arguments (earlier ones kept aside), running nothing
    run_methods(argparse.Namespace(**{**vars(args), "seeds": []}))
    records = json.loads(args.out.read_text())
    replaymask_commit = source_commit()
    seed = args.seeds[0]
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        for method, buffer in ((m, b) for b in args.buffers for m in args.methods
                               if b in METHODS[m]["buffers"]):
            record = next((r for r in records if r["method"] == method
                           and r["buffer_size"] == buffer), None)
            record["seeds"] = sorted(set(record["seeds"]) | {seed})
            speed = record.get("speed", {})
            if speed.get("seed") == seed and "mammoth" in speed and "replaymask" in speed:
                if not args.again:
                    continue
                record.setdefault("earlier_speed", []).append(speed)  # kept, newest last
            ours = method_arguments(method, buffer)[1]
            for name, value in METHODS[method].get("speed_with", {}).items():
                ours = [*ours, "--" + name.replace("_", "-"), str(value)]
            speed = {"seed": seed, "date": datetime.now(timezone.utc).isoformat(
                timespec="seconds"), "replaymask_commit": replaymask_commit,
                "replaymask_arguments": shown(method_command_ours(ours, buffer, seed,
                                                                  Path("OUT")))}
            for tool in ("mammoth", "replaymask"):
                load = wait_for_quiet(quiet=args.quiet_load)
                print(f"{method:6s} {buffer:4d} seed {seed}  {tool:11s} (load {load:.2f}) ...",
                      end=" ", flush=True)
                result = (run_method_mammoth(args, method, buffer, seed, scratch)
                          if tool == "mammoth" else
                          run_method_ours(ours, buffer, seed, scratch))
                result["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
                speed[tool] = result
                print(f"{result['wall_s']:7.1f} s", flush=True)
                holder = record[tool]
                if tool == "replaymask" and METHODS[method].get("speed_with"):
                    continue  # timed with other settings: not an accuracy run of the record
                if not result.get("timed_out") and not any(
                        done["seed"] == seed for done in holder.get("runs", [])):
                    if tool == "replaymask":
                        result["replaymask_commit"] = replaymask_commit
                    holder.update(tool_summary(holder.get("runs", []) + [result],
                                               record["seeds"]))
            speed["ratio"] = round(speed["mammoth"]["wall_s"] / speed["replaymask"]["wall_s"], 2)
            record["speed"] = speed
            temporary = args.out.with_suffix(".json.tmp")
            temporary.write_text(json.dumps(records, indent=1) + "\n")
            temporary.replace(args.out)
    print_speed_table(records)
    return 0


def print_speed_table(records: list[dict]) -> None:
    """The speed table as Markdown (BENCHMARKS.md section 3 carries it)."""
    print("\n| method | buffer | seed | Mammoth wall | replaymask wall | Mammoth / replaymask |"
          " Mammoth peak RSS | replaymask peak RSS |")
    print("|---|---|---|---|---|---|---|---|")
    for record in records:
        speed = record.get("speed")
        if not speed:
            continue
        theirs, ours = speed["mammoth"], speed["replaymask"]
        stopped = " (stopped)" if theirs.get("timed_out") else ""
        print(f"| {record['method']} | {record['buffer_size']} | {speed['seed']} | "
              f"{theirs['wall_s']:.1f} s{stopped} | {ours['wall_s']:.1f} s | "
              f"{'>' if stopped else ''}{speed['ratio']:.1f}x | "
              f"{theirs.get('peak_rss_mib', 0):.0f} MiB | {ours['peak_rss_mib']:.0f} MiB |")


def print_markdown_tables(records: list[dict]) -> None:
    """The accuracy table (mean +- standard deviation over the seeds) and the speed table, as
    Markdown, from the records alone (docs/vs-mammoth-methods.md carries their output)."""
    def cell(values: list[float]) -> str:
        if not values:
            return "-"
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.2f} +- {spread:.2f}"

    def mean(values: list[float]) -> float:
        return statistics.mean(values) if values else math.nan
    print("| method | buffer | seeds (ours / Mammoth) | Class-IL: replaymask | Mammoth | diff "
          "| Task-IL: replaymask | Mammoth | diff | DER paper (Class-IL / Task-IL) | "
          "replaymask at the paper's arguments |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for record in records:
        ours, theirs = record["replaymask"], record["mammoth"]
        if not ours.get("class_il"):
            continue
        diffs = [f"{mean(ours[k]) - mean(theirs.get(k, [])):+.2f}"
                 for k in ("class_il", "task_il")]
        paper, at_paper = record.get("published"), "-"
        if paper:
            name = paper["compared_with"]
            runs = ours if name == "replaymask" else next(
                (v for v in record.get("replaymask_variants", []) if v["name"] == name), {})
            at_paper = (f"{cell(runs.get('class_il', []))} / {cell(runs.get('task_il', []))}"
                        + ("" if name == "replaymask" else f" ({name.split(', ', 1)[1]})"))
        print(f"| {record['method']} | {record['buffer_size']} | "
              f"{len(ours['class_il'])} / {len(theirs.get('class_il', []))} | "
              f"{cell(ours['class_il'])} | {cell(theirs.get('class_il', []))} | {diffs[0]} | "
              f"{cell(ours['task_il'])} | {cell(theirs.get('task_il', []))} | {diffs[1]} | "
              + (f"{paper['class_il']:.2f} / {paper['task_il']:.2f} | " if paper else "- | ")
              + f"{at_paper} |")
        for variant in record.get("replaymask_variants", []):
            if not variant.get("class_il"):
                continue
            diffs = [f"{mean(variant[k]) - mean(theirs.get(k, [])):+.2f}"
                     for k in ("class_il", "task_il")]
            print(f"| {record['method']}: {variant['name'].split(', ', 1)[-1]} | "
                  f"{record['buffer_size']} | {len(variant['class_il'])} / "
                  f"{len(theirs.get('class_il', []))} | {cell(variant['class_il'])} | "
                  f"{cell(theirs.get('class_il', []))} | {diffs[0]} | "
                  f"{cell(variant['task_il'])} | {cell(theirs.get('task_il', []))} | "
                  f"{diffs[1]} | | |")
    print_speed_table(records)


def print_method_table(records: list[dict]) -> None:
    print(f"\n{'method':8s} {'tool':34s} {'seeds':>5s} {'Class-IL':>15s} {'Task-IL':>15s}")
    for record in records:
        rows = [("Mammoth", record["mammoth"]), ("replaymask", record["replaymask"])]
        rows += [(v["name"], v) for v in record.get("replaymask_variants", [])]
        for name, tool in rows:
            if not tool.get("class_il"):
                continue
            cells = []
            for key in ("class_il", "task_il"):
                values = tool[key]
                spread = statistics.stdev(values) if len(values) > 1 else 0.0
                cells.append(f"{statistics.mean(values):6.2f} +- {spread:5.2f}")
            print(f"{record['method']:8s} {name:34s} {len(tool['class_il']):5d} "
                  f"{cells[0]:>15s} {cells[1]:>15s}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mammoth", type=Path, required=True, help="a Mammoth checkout")
    parser.add_argument("--mammoth-python", required=True, help="the Python that runs it")
    parser.add_argument("--models", nargs="+", choices=sorted(PROTOCOL), default=["er", "derpp"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "vs_mammoth",
                        help="where the IDX files go (Mammoth's --base_path)")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: results/vs_mammoth.json, or results/"
                             "vs_mammoth_methods.json with --methods")
    parser.add_argument("--methods", nargs="*", choices=METHOD_ORDER, default=None,
                        help="the methods mode: these methods (none named: all, in the "
                             "order " + ", ".join(METHOD_ORDER) + ")")
    parser.add_argument("--buffers", nargs="+", type=int, choices=METHOD_BUFFERS,
                        default=[200], help="methods mode: the buffer sizes (default 200)")
    parser.add_argument("--speed", action="store_true",
                        help="methods mode: the speed table (the first seed of --seeds, both "
                             "tools, each run started on a quiet machine)")
    parser.add_argument("--tables", action="store_true",
                        help="print the methods mode's accuracy and speed tables (Markdown) "
                             "from --out and run nothing")
    parser.add_argument("--again", action="store_true",
                        help="--speed: time the methods again where the seed has a speed "
                             "record (after a change to the code; the earlier record is "
                             "kept under earlier_speed)")
    parser.add_argument("--quiet-load", type=float, default=1.0,
                        help="--speed: start each run once the 1-minute load average is "
                             "under this (waiting at most 15 minutes; default 1)")
    parser.add_argument("--ours-again-before", metavar="REV", default=None,
                        help="methods mode: run replaymask's side (and its variants) again "
                             "where a run was recorded at a commit before REV (one that "
                             "changed these methods' arithmetic); the earlier runs are kept "
                             "under earlier_replaymask (resumable: runs recorded at REV or "
                             "after are kept)")
    parser.add_argument("--skip-mammoth", action="store_true",
                        help="methods mode: run only replaymask's side (Mammoth's later)")
    parser.add_argument("--mammoth-timeout", nargs="*", default=[], metavar="METHOD=MINUTES",
                        help="stop a Mammoth run of METHOD after MINUTES (methods mode; "
                             "default mer=40)")
    args = parser.parse_args()
    if args.tables:  # reads the records only
        path = args.out or REPO / "results" / "vs_mammoth_methods.json"
        print_markdown_tables(json.loads(path.read_text()))
        return 0
    if not (args.mammoth / "main.py").is_file():
        sys.exit(f"vs_mammoth: {args.mammoth} has no main.py: pass a Mammoth checkout")
    args.mammoth, args.data = args.mammoth.resolve(), args.data.resolve()
    write_idx_data(args.data)
    if args.methods is not None:
        args.methods = list(args.methods) or list(METHOD_ORDER)
        args.out = args.out or REPO / "results" / "vs_mammoth_methods.json"
        args.mammoth_timeout = {**MAMMOTH_TIMEOUT_S, **{
            name: float(minutes) * 60 for name, minutes in
            (item.split("=", 1) for item in args.mammoth_timeout)}}
        return run_speed(args) if args.speed else run_methods(args)
    args.out = args.out or REPO / "results" / "vs_mammoth.json"
    variants = {  # name: how to run it
        "mammoth (default workers)": lambda model, seed, s: mammoth_run(args, model, seed, None, s),
        "mammoth --num_workers 0": lambda model, seed, s: mammoth_run(args, model, seed, 0, s),
        "replaymask": lambda model, seed, s: ours_run(model, seed, s, []),
    }
    runs = []
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        print("warm-up (untimed): one run of each tool", flush=True)
        mammoth_run(args, "er", 0, 0, scratch)
        ours_run("er", 0, scratch, [])
        for model in args.models:
            model_variants = dict(variants)
            if model == "derpp":  # our default replay batch too (Mammoth cannot run it)
                model_variants["replaymask, replay 128 (DER paper)"] = (
                    lambda model, seed, s: ours_run(model, seed, s, ["--minibatch-size", "128"]))
            for seed in args.seeds:
                for name, run in model_variants.items():
                    record = {"model": model, "seed": seed, "variant": name,
                              **run(model, seed, scratch)}
                    runs.append(record)
                    print(f"{model:6s} seed {seed}  {name:36s} {record['wall_s']:7.2f} s "
                          f"{record['peak_rss_mib']:6.0f} MiB  Class-IL {record['class_il']:6.2f}"
                          f"  Task-IL {record['task_il']:6.2f}", flush=True)
    summary = summarize(runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"versions": versions(args), "summary": summary,
                                    "runs": runs}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


def summarize(runs: list[dict]) -> list[dict]:
    rows = []
    for model in dict.fromkeys(run["model"] for run in runs):
        ours = statistics.median(run["wall_s"] for run in runs
                                 if run["model"] == model and run["variant"] == "replaymask")
        print(f"\n{model}: median wall, peak RSS, mean accuracies over seeds; ratio = "
              "its wall / replaymask's")
        for variant in dict.fromkeys(run["variant"] for run in runs if run["model"] == model):
            chosen = [run for run in runs if run["model"] == model and run["variant"] == variant]
            row = {"model": model, "variant": variant, "runs": len(chosen),
                   "wall_s_median": statistics.median(run["wall_s"] for run in chosen),
                   "peak_rss_mib_max": max(run["peak_rss_mib"] for run in chosen),
                   "class_il_mean": statistics.mean(run["class_il"] for run in chosen),
                   "task_il_mean": statistics.mean(run["task_il"] for run in chosen)}
            row["ratio_to_replaymask"] = row["wall_s_median"] / ours
            rows.append(row)
            print(f"  {variant:36s} {row['wall_s_median']:7.2f} s  "
                  f"{row['peak_rss_mib_max']:5.0f} MiB  Class-IL {row['class_il_mean']:6.2f}  "
                  f"Task-IL {row['task_il_mean']:6.2f}  x{row['ratio_to_replaymask']:.1f}")
    return rows


if __name__ == "__main__":
    raise SystemExit(main())

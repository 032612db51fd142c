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
Mammoth at e75a491 sets the replay batch to the stream batch whatever
``--minibatch_size`` says, so its DER++ replays 10; replaymask's DER++ is timed both with
replay 10 (the same arithmetic; the ratio is taken against this) and with the DER paper's
128 (our default). Prints medians and ratios, and writes every run to ``--out``.

**The methods mode** (``--methods [agem fdr icarl gem gdumb mer]``; issue 19): each
rehearsal method that both tools have, S-MNIST, buffer 200, the given seeds, one process
at a time: Mammoth with ``--num_workers 0``, then ``replaymask run``, with the same
hyper-parameters (``METHODS`` below; Mammoth has no S-MNIST best arguments for them), and
the few extra replaymask settings listed there (``variants``). It writes one record per
method and buffer to ``--out`` (default ``results/vs_mammoth_methods.json``): both tools'
command lines, the final Class-IL and Task-IL average accuracy of each seed, the median
wall time, the commits and the machine. The file is written after every run and read at
start: runs already in it are skipped (so an interrupted session resumes), and notes
written into a record by hand are kept. A Mammoth run longer than ``--mammoth-timeout``
(per method; MER: 40 minutes) is stopped and recorded as such, with the accuracies it had
printed after each task so far (every run records them: ``after_each_task``, the average
over the tasks seen after each task), and that method's other Mammoth seeds are not run.
Accuracy is the point here, not speed: the wall times are of whatever else the machine
was running.
"""

from __future__ import annotations

import argparse
import json
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

METHOD_ORDER = ("agem", "fdr", "icarl", "gem", "gdumb", "mer")
METHOD_BUFFER = 200
# name: Mammoth's arguments, replaymask's, and extra replaymask settings run beside them.
# The stream batch is 10 in both tools, except Mammoth's MER (batch 1: it forces it).
METHODS = {
    "agem": {  # Mammoth's memory: one stream batch per task (ours: --agem-memory batch)
        "mammoth": ["--model", "agem", "--lr", "0.1", "--minibatch_size", "10"],
        "ours": ["--model", "agem", "--lr", "0.1", "--minibatch-size", "10",
                 "--agem-memory", "batch"],
        "variants": {},
    },
    "fdr": {
        "mammoth": ["--model", "fdr", "--lr", "0.03", "--alpha", "1.0", "--minibatch_size", "10"],
        "ours": ["--model", "fdr", "--lr", "0.03", "--alpha", "1.0", "--minibatch-size", "10"],
        "variants": {},
    },
    "icarl": {  # Mammoth's --opt_wd default is 1e-5, ours too: given explicitly in both
        "mammoth": ["--model", "icarl", "--lr", "0.1", "--opt_wd", "1e-5"],
        "ours": ["--model", "icarl", "--lr", "0.1", "--opt-wd", "1e-5"],
        "variants": {},
    },
    "gem": {
        "mammoth": ["--model", "gem", "--lr", "0.1", "--gamma", "0.5"],
        "ours": ["--model", "gem", "--lr", "0.1", "--gamma", "0.5"],
        "variants": {},
    },
    "gdumb": {  # Mammoth's optimiser given our (the paper's) momentum and weight decay
        "mammoth": ["--model", "gdumb", "--lr", "0", "--maxlr", "0.05", "--minlr", "0.0005",
                    "--fitting_epochs", "256", "--cutmix_alpha", "1.0", "--optim_mom", "0.9",
                    "--optim_wd", "1e-6"],
        "ours": ["--model", "gdumb", "--maxlr", "0.05", "--minlr", "0.0005",
                 "--fitting-epochs", "256", "--cutmix-alpha", "1.0"],
        "variants": {},
    },
    "mer": {  # Mammoth forces batch 1, and at e75a491 sets the replay batch to the batch
        # size whatever --minibatch_size says: its MER replays 1 item per inner step. Ours
        # replays 1 too (the same arithmetic); the 25 of Mammoth's Rot-MNIST arguments as a
        # variant. Ours loops over the samples of a batch of 10 (the per-sample algorithm).
        "mammoth": ["--model", "mer", "--lr", "0.1", "--beta", "0.01", "--gamma", "0.03",
                    "--batch_size", "1"],
        "ours": ["--model", "mer", "--lr", "0.1", "--beta", "0.01", "--gamma", "0.03",
                 "--minibatch-size", "1"],
        "variants": {"replaymask --minibatch-size 25": [
            "--model", "mer", "--lr", "0.1", "--beta", "0.01", "--gamma", "0.03",
            "--minibatch-size", "25"]},
    },
}
MAMMOTH_TIMEOUT_S = {"mer": 40 * 60}
METHOD_NOTES = {
    "mer": "Mammoth at e75a491 runs MER with batch size 1 and sets --minibatch_size to the "
           "batch size (main.py extend_args), so it replays 1 item per inner step whatever "
           "--minibatch_size says (checked: its parsed arguments give minibatch_size 1 for "
           "--minibatch_size 25 --batch_size 1). replaymask runs the same arithmetic "
           "(--minibatch-size 1); the 25 of Mammoth's Rot-MNIST arguments is the variant.",
    "gdumb": "Mammoth trains GDumb's network only after the last task, replaymask after every "
             "task: only the final accuracies (these) compare.",
    "agem": "Mammoth's A-GEM memory is one stream batch (10 items) per task whatever "
            "--buffer_size says; replaymask runs the same with --agem-memory batch.",
}


def method_command_mammoth(args, method: str, seed: int) -> list[str]:
    specific = METHODS[method]["mammoth"]
    batch = [] if "--batch_size" in specific else ["--batch_size", "10"]
    return [args.mammoth_python, "main.py", *specific, "--dataset", "seq-mnist",
            "--buffer_size", str(METHOD_BUFFER), *batch, "--n_epochs", "1",
            "--num_workers", "0", "--seed", str(seed), "--base_path", f"{args.data}/"]


def method_command_ours(specific: list[str], seed: int, out: Path) -> list[str]:
    return [sys.executable, "-m", "replaymask", "run", *specific, "--dataset", "seq-mnist",
            "--buffer-size", str(METHOD_BUFFER), "--batch-size", "10", "--n-epochs", "1",
            "--no-progress", "--no-download", "--seed", str(seed), "--out", str(out)]


def shown(command: list[str]) -> str:
    """A command line as a user types it: the interpreter and the scratch paths named."""
    words = list(command)
    words[0] = "python"
    if "--out" in words:
        words[words.index("--out") + 1] = "OUT"
    if "--base_path" in words:
        words[words.index("--base_path") + 1] = "DATA/"
    return " ".join(words)


def run_method_mammoth(args, method: str, seed: int, scratch: Path) -> dict:
    command = method_command_mammoth(args, method, seed)
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


def run_method_ours(specific: list[str], seed: int, scratch: Path) -> dict:
    out = scratch / "ours"
    log = scratch / "ours.log"
    load = os.getloadavg()[0]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(  # this checkout's code, always
        filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    wall, rss, code = timed(method_command_ours(specific, seed, out), REPO, log, env=env)
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


def run_methods(args) -> int:
    info = versions(args)
    replaymask_commit = source_commit()
    records = json.loads(args.out.read_text()) if args.out.exists() else []
    machine = {"cores": info["cores"], "cpu": info["cpu"], "python": info["python"],
               "torch_mammoth": info["torch_mammoth"],
               "torch_replaymask": info["torch_replaymask"],
               "load": "shared: a long background hyper-parameter search (replaymask search, "
                       "2 workers) and other jobs ran on the same cores throughout, so the "
                       "wall times are not a speed comparison (load_before: the 1-minute "
                       "load average as each run started)"}

    def record_of(method: str) -> dict:
        for record in records:
            if record["method"] == method and record["buffer_size"] == METHOD_BUFFER:
                return record
        record = {"method": method, "buffer_size": METHOD_BUFFER, "seeds": list(args.seeds),
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
        for method in args.methods:
            spec = METHODS[method]
            record = record_of(method)
            record["seeds"] = sorted(set(record["seeds"]) | set(args.seeds))
            example = {"mammoth": shown(method_command_mammoth(args, method, 0)),
                       "replaymask": shown(method_command_ours(spec["ours"], 0, Path("OUT")))}
            record["arguments"].update({key: value.replace("--seed 0", "--seed SEED")
                                        for key, value in example.items()})
            note = METHOD_NOTES.get(method)
            if note and note not in record["notes"]:
                record["notes"].append(note)
            tools = {"mammoth": lambda seed, m=method: run_method_mammoth(args, m, seed,
                                                                          scratch),
                     "replaymask": lambda seed, o=spec["ours"]: run_method_ours(o, seed,
                                                                                scratch)}
            variants = record.setdefault("replaymask_variants", []) if spec["variants"] \
                else None
            for name, specific in spec["variants"].items():
                entry = next((v for v in variants if v["name"] == name), None)
                if entry is None:
                    entry = {"name": name}
                    variants.append(entry)
                entry["arguments"] = shown(method_command_ours(specific, 0, Path("OUT"))
                                           ).replace("--seed 0", "--seed SEED")
                tools[name] = lambda seed, o=specific: run_method_ours(o, seed, scratch)
            for seed in args.seeds:
                for tool, run in tools.items():
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
                    print(f"{method:6s} seed {seed}  {tool:32s} ...", end=" ", flush=True)
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
    parser.add_argument("--mammoth-timeout", nargs="*", default=[], metavar="METHOD=MINUTES",
                        help="stop a Mammoth run of METHOD after MINUTES (methods mode; "
                             "default mer=40)")
    args = parser.parse_args()
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
        return run_methods(args)
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

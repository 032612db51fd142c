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
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
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


def timed(command: list[str], cwd: Path, log: Path) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MiB, exit code) of one fresh process."""
    with open(log, "wb") as output:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mammoth", type=Path, required=True, help="a Mammoth checkout")
    parser.add_argument("--mammoth-python", required=True, help="the Python that runs it")
    parser.add_argument("--models", nargs="+", choices=sorted(PROTOCOL), default=["er", "derpp"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "vs_mammoth",
                        help="where the IDX files go (Mammoth's --base_path)")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "vs_mammoth.json")
    args = parser.parse_args()
    if not (args.mammoth / "main.py").is_file():
        sys.exit(f"vs_mammoth: {args.mammoth} has no main.py: pass a Mammoth checkout")
    args.mammoth, args.data = args.mammoth.resolve(), args.data.resolve()
    write_idx_data(args.data)
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

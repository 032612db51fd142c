"""GMS inside Mammoth, checked against Mammoth's own models and against replaymask.

    python benchmarks/mammoth_gms.py --mammoth DIR --mammoth-python PYTHON \\
        [--seeds 0 1 2] [--models er derpp] [--variants own gms0 gms1 ours ours-gms] \\
        [--data DIR] [--out results/mammoth_gms.json]

DIR is a checkout of aimagelab/mammoth that runs offline with PYTHON, which must have
replaymask installed (``pip install --no-deps -e .``). For the duration of the script the
model files of ``integrations/mammoth/models/`` are copied into ``DIR/models/`` (and
removed afterwards; an existing different file of the same name stops the script).

On S-MNIST, buffer 200, the DER paper's protocol as ``benchmarks/vs_mammoth.py`` runs it
(batch 10, 1 epoch; ER lr 0.01; DER++ lr 0.03, alpha 0.2, beta 1; Mammoth at e75a491
replays ``--batch_size`` samples whatever ``--minibatch_size`` says, so replay 10, and
replaymask is run with replay 10 too), for each seed, one process at a time:

* Mammoth's own model (``er``, ``derpp``);
* the GMS file with ``--gms 0``: must give the same accuracies as Mammoth's own model;
* the GMS file with ``--gms 1`` (hard masking);
* ``replaymask run`` without and with ``--gms``.

``--variants`` runs only some of these (in this order: ``own``, ``gms0``, ``gms1``, ``ours``,
``ours-gms``), e.g. to add seeds without the ``--gms 0`` control.

Each run's command line, final Class-IL / Task-IL and per-task accuracies are written to
``--out`` after every run, with the versions and date of the invocation that ran it; a
run already there with the same command is not repeated (so an interrupted invocation is
resumed by running it again), and runs there that this invocation does not plan are kept.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_mammoth import ACCURACY, write_idx_data  # noqa: E402 (the sibling benchmark)

REPO = Path(__file__).resolve().parents[1]
MODEL_FILES = REPO / "integrations" / "mammoth" / "models"
TASK_ACCURACIES = "Raw accuracy values: Class-IL "  # Mammoth's line with each task's accuracy
PROTOCOL = {  # model: (Mammoth's arguments, replaymask's)
    "er": (["--lr", "0.01", "--minibatch_size", "10"],
           ["--lr", "0.01", "--minibatch-size", "10"]),
    "derpp": (["--lr", "0.03", "--minibatch_size", "10", "--alpha", "0.2", "--beta", "1.0"],
              ["--lr", "0.03", "--minibatch-size", "10", "--alpha", "0.2", "--beta", "1.0"]),
}
COMMON_MAMMOTH = ["--dataset", "seq-mnist", "--buffer_size", "200", "--batch_size", "10",
                  "--n_epochs", "1", "--num_workers", "0"]
VARIANT_KEYS = ["own", "gms0", "gms1", "ours", "ours-gms"]  # --variants, in variants()' order
COMMON_OURS = ["--dataset", "seq-mnist", "--buffer-size", "200", "--batch-size", "10",
               "--n-epochs", "1", "--no-progress", "--no-download"]


def variants(model: str, keys=VARIANT_KEYS) -> list[tuple[str, str, list[str]]]:
    """(variant name, tool, tool-specific arguments) for one model, in run order; only those
    of ``keys`` (see ``VARIANT_KEYS``)."""
    mammoth, ours = PROTOCOL[model]
    every = [
        (f"mammoth {model}", "mammoth", ["--model", model, *mammoth]),
        (f"mammoth {model}_gms --gms 0", "mammoth", ["--model", f"{model}_gms", *mammoth,
                                                      "--gms", "0"]),
        (f"mammoth {model}_gms --gms 1", "mammoth", ["--model", f"{model}_gms", *mammoth,
                                                      "--gms", "1"]),
        (f"replaymask {model}", "replaymask", ["--model", model, *ours]),
        (f"replaymask {model} --gms", "replaymask", ["--model", model, *ours, "--gms"]),
    ]
    return [variant for key, variant in zip(VARIANT_KEYS, every, strict=True) if key in keys]


def run_mammoth(args, arguments: list[str], seed: int, scratch: Path) -> dict:
    command = [args.mammoth_python, "main.py", *arguments, *COMMON_MAMMOTH, "--seed", str(seed),
               "--base_path", f"{args.data}/"]
    log = scratch / "mammoth.log"
    code, wall = timed(command, args.mammoth, log)
    text = log.read_text(errors="replace")
    found = ACCURACY.findall(text)
    if code != 0 or not found:
        sys.exit(f"mammoth_gms: Mammoth failed (exit {code}): {text[-600:]}")
    tasks, class_il, task_il = found[-1]
    return {"command": display(command, args), "class_il": float(class_il),
            "task_il": float(task_il), "tasks": int(tasks),
            "per_task": per_task_accuracies(text), "wall_s": wall}


def run_ours(args, arguments: list[str], seed: int, scratch: Path) -> dict:
    out = scratch / "ours"
    command = [args.replaymask, "run", *arguments, *COMMON_OURS, "--seed", str(seed),
               "--out", str(out)]
    code, wall = timed(command, REPO, scratch / "ours.log")
    if code != 0:
        sys.exit(f"mammoth_gms: replaymask failed: {(scratch / 'ours.log').read_text()[-600:]}")
    result = json.loads((out / "result.json").read_text())
    matrix = result["accuracy_matrix"]
    shown = [part if part != str(out) else "OUT" for part in display(command, args)]
    return {"command": shown,
            "class_il": result["metrics"]["class_il"]["average_accuracy"],
            "task_il": result["metrics"]["task_il"]["average_accuracy"],
            "tasks": len(matrix["class_il"]),
            "per_task": {"class_il": matrix["class_il"][-1], "task_il": matrix["task_il"][-1]},
            "wall_s": wall}


def per_task_accuracies(text: str) -> dict | None:
    """Each task's accuracy after the last task, from Mammoth's 'Raw accuracy values' lines."""
    lines = [line for line in text.splitlines() if TASK_ACCURACIES in line]
    if not lines:
        return None
    class_il, _, task_il = lines[-1].split(TASK_ACCURACIES, 1)[1].partition("| Task-IL")
    return {"class_il": json.loads(class_il.strip()), "task_il": json.loads(task_il.strip())}


def timed(command: list[str], cwd: Path, log: Path) -> tuple[int, float]:
    with open(log, "wb") as output:
        start = time.perf_counter()
        code = subprocess.run(command, cwd=cwd, stdout=output, stderr=subprocess.STDOUT).returncode
    return code, time.perf_counter() - start


def display(command: list[str], args) -> list[str]:
    """The command as a reader would type it: tools by name, data under DATA."""
    names = {args.mammoth_python: "python", args.replaymask: "replaymask"}
    return [names.get(part, part.replace(str(args.data), "DATA")) for part in command]


class CopiedModelFiles:
    """The GMS model files inside Mammoth's models/ folder while the block runs."""

    def __init__(self, mammoth: Path):
        self.pairs = [(source, mammoth / "models" / source.name)
                      for source in sorted(MODEL_FILES.glob("*.py"))]

    def __enter__(self):
        for source, target in self.pairs:
            if target.exists() and not filecmp.cmp(source, target, shallow=False):
                sys.exit(f"mammoth_gms: {target} exists and differs from {source}; "
                         "remove it first")
        self.created = [target for _, target in self.pairs if not target.exists()]
        for source, target in self.pairs:
            shutil.copyfile(source, target)
        return self

    def __exit__(self, *exc):
        for target in self.created:
            target.unlink(missing_ok=True)


def versions(args) -> dict:
    def output(command, cwd=None):
        try:
            return subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "unknown"
    torch_version = ["-c", "import torch; print(torch.__version__)"]
    # the replaymask that `--replaymask` runs may be another checkout than this script's
    script = Path(shutil.which(args.replaymask) or args.replaymask)
    first_line = script.read_text(errors="replace").partition("\n")[0] if script.is_file() else ""
    python = first_line[2:].strip() if first_line.startswith("#!") else sys.executable
    package = output([python, "-c", "import os, replaymask; "
                                    "print(os.path.dirname(replaymask.__file__))"])
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "mammoth_commit": output(["git", "rev-parse", "HEAD"], args.mammoth),
            "model_files_commit": output(["git", "rev-parse", "HEAD"], REPO) + (
                "+uncommitted changes" if output(["git", "status", "--porcelain", "--",
                                                  "integrations", "src"], REPO) else ""),
            "replaymask_run_from": package,
            "replaymask_commit": output(["git", "-C", package, "rev-parse", "HEAD"])
            if package != "unknown" else "unknown",
            "torch_mammoth": output([args.mammoth_python, *torch_version]),
            "torch_replaymask": output([python, *torch_version]),
            "cores": os.cpu_count()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mammoth", type=Path, required=True, help="a Mammoth checkout")
    parser.add_argument("--mammoth-python", required=True, help="the Python that runs it")
    parser.add_argument("--replaymask", default=shutil.which("replaymask") or "replaymask",
                        help="the replaymask command (default: the one on PATH)")
    parser.add_argument("--models", nargs="+", choices=sorted(PROTOCOL), default=["er", "derpp"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", choices=VARIANT_KEYS, default=VARIANT_KEYS,
                        help="which runs of each seed: Mammoth's own model, the GMS file "
                             "with --gms 0 and 1, replaymask without and with --gms "
                             "(default: all)")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "vs_mammoth",
                        help="where the IDX files go (Mammoth's --base_path)")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "mammoth_gms.json")
    parser.add_argument("--table", action="store_true",
                        help="print --out's runs as markdown tables (per variant; the GMS "
                             "gains paired by seed) and exit (runs nothing)")
    args = parser.parse_args()
    if args.table:
        runs = json.loads(args.out.read_text())["runs"]
        print(markdown_table(summarize(runs, quiet=True)))
        print()
        print(gains_table(gms_gains(runs)))
        return 0
    if not (args.mammoth / "main.py").is_file():
        sys.exit(f"mammoth_gms: {args.mammoth} has no main.py: pass a Mammoth checkout")
    args.mammoth, args.data = args.mammoth.resolve(), args.data.resolve()
    write_idx_data(args.data)
    earlier = json.loads(args.out.read_text()) if args.out.is_file() else {}
    done = earlier.get("runs", [])
    # each invocation's versions; a run's "invocation" is its index here
    if "invocations" in earlier:
        args.invocations = earlier["invocations"]
    else:  # a file of one invocation, or none
        args.invocations = [earlier["versions"]] if earlier else []
    for run in done:
        run.setdefault("invocation", 0)  # written before runs named their invocation
    args.invocations.append(versions(args))
    known = {json.dumps(run["command"]): run for run in done}
    runs = []
    with CopiedModelFiles(args.mammoth), tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        for model in args.models:
            for seed in args.seeds:
                for name, tool, arguments in variants(model, args.variants):
                    run = run_mammoth if tool == "mammoth" else run_ours
                    record = known.get(json.dumps(planned(args, tool, arguments, seed, scratch)))
                    if record is None:
                        record = {"model": model, "seed": seed, "variant": name,
                                  "invocation": len(args.invocations) - 1,
                                  **run(args, arguments, seed, scratch)}
                    runs.append(record)
                    print(f"{model:6s} seed {seed}  {name:30s} Class-IL {record['class_il']:6.2f}"
                          f"  Task-IL {record['task_il']:6.2f}", flush=True)
                    write(args, runs, done)
    write(args, runs, done)
    print(markdown_table(summarize(runs)))
    print()
    print(gains_table(gms_gains(runs)))
    print(f"wrote {args.out}")
    return 0


def planned(args, tool: str, arguments: list[str], seed: int, scratch: Path) -> list[str]:
    """The command a run would record, to find it among the runs already done."""
    if tool == "mammoth":
        command = [args.mammoth_python, "main.py", *arguments, *COMMON_MAMMOTH, "--seed",
                   str(seed), "--base_path", f"{args.data}/"]
        return display(command, args)
    command = [args.replaymask, "run", *arguments, *COMMON_OURS, "--seed", str(seed),
               "--out", "OUT"]
    return display(command, args)


def write(args, runs: list[dict], done: list[dict]) -> None:
    """Every run of this invocation and the earlier ones it did not repeat."""
    commands = {json.dumps(run["command"]) for run in runs}
    kept = [run for run in done if json.dumps(run["command"]) not in commands]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"invocations": args.invocations, "summary": summarize(
        kept + runs, quiet=True), "gms_gains": gms_gains(kept + runs), "runs": kept + runs},
        indent=1) + "\n")


def summarize(runs: list[dict], quiet: bool = False) -> list[dict]:
    """Mean and spread over seeds of each variant, and whether ``--gms 0`` equals Mammoth's
    own model seed by seed."""
    import statistics

    rows = []
    for variant in dict.fromkeys(run["variant"] for run in runs):
        chosen = sorted((run for run in runs if run["variant"] == variant),
                        key=lambda run: run["seed"])
        row = {"model": chosen[0]["model"], "variant": variant,
               "seeds": [run["seed"] for run in chosen]}
        for metric in ("class_il", "task_il"):
            values = [run[metric] for run in chosen]
            row[f"{metric}_mean"] = statistics.mean(values)
            row[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        if variant.endswith("_gms --gms 0"):
            own = {run["seed"]: run for run in runs
                   if run["variant"] == f"mammoth {row['model']}"}
            row["equals_mammoth_own_model"] = all(  # final and per-task accuracies alike
                run["seed"] in own and all(run[key] == own[run["seed"]][key]
                                           for key in ("class_il", "task_il", "per_task"))
                for run in chosen)
        rows.append(row)
        if not quiet:
            same = row.get("equals_mammoth_own_model")
            print(f"{variant:32s} seeds {row['seeds']}  Class-IL {row['class_il_mean']:6.2f} "
                  f"+- {row['class_il_std']:4.2f}  Task-IL {row['task_il_mean']:6.2f} +- "
                  f"{row['task_il_std']:4.2f}" + ("" if same is None else f"  same as "
                                                  f"Mammoth's own: {same}"))
    return rows


def accuracy(run: dict, metric: str) -> float:
    """A run's final accuracy, the mean of its per-task accuracies where recorded (Mammoth
    prints its average rounded to two decimals, its per-task accuracies in full)."""
    per_task = (run.get("per_task") or {}).get(metric)
    return sum(per_task) / len(per_task) if per_task else run[metric]


def gms_gains(runs: list[dict]) -> list[dict]:
    """Per model and metric: each tool's gain from GMS, paired by seed (Mammoth: the GMS file
    with ``--gms 1`` against Mammoth's own model; replaymask: ``--gms`` against without),
    and the difference of the two gains over the seeds both tools have (Mammoth's gain
    minus replaymask's, seed by seed); each with its mean, 95% t-interval and paired p."""
    from replaymask.experiments.stats import mean_interval, paired_tests

    def summary(differences: list[float]) -> dict:
        mean, low, high = mean_interval(differences)
        p = paired_tests(differences)[0] if len(differences) > 1 else None
        return {"n": len(differences), "mean": mean, "low": low, "high": high, "p": p}

    by_variant: dict[str, dict[int, dict]] = {}
    for run in runs:
        by_variant.setdefault(run["variant"], {})[run["seed"]] = run
    found = []
    for model in dict.fromkeys(run["model"] for run in runs):
        pairs = {"mammoth": (f"mammoth {model}", f"mammoth {model}_gms --gms 1"),
                 "replaymask": (f"replaymask {model}", f"replaymask {model} --gms")}
        for metric in ("class_il", "task_il"):
            gains = {}
            for tool, (off, on) in pairs.items():
                plain, masked = by_variant.get(off, {}), by_variant.get(on, {})
                gains[tool] = {seed: accuracy(masked[seed], metric) - accuracy(plain[seed], metric)
                               for seed in sorted(set(plain) & set(masked))}
            row = {"model": model, "metric": metric}
            for tool, gain in gains.items():
                if gain:
                    row[tool] = {**summary(list(gain.values())), "seeds": list(gain)}
            both = sorted(set(gains["mammoth"]) & set(gains["replaymask"]))
            if both:
                row["mammoth_minus_replaymask"] = {
                    **summary([gains["mammoth"][s] - gains["replaymask"][s] for s in both]),
                    "seeds": both}
            found.append(row)
    return found


def gains_table(rows: list[dict]) -> str:
    """The GMS gains and their difference, one row per model and metric."""
    def shown(found: dict | None) -> str:
        if not found:
            return "-"
        interval = "" if found["low"] is None else f" [{found['low']:+.2f}, {found['high']:+.2f}]"
        p = "" if found["p"] is None else f", p {found['p']:.3f}"
        return f"{found['mean']:+.2f}{interval} (n {found['n']}{p})"
    lines = ["| model | metric | GMS gain, Mammoth | GMS gain, replaymask | Mammoth's gain "
             "minus replaymask's |", "|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['model']} | {row['metric']} | {shown(row.get('mammoth'))} | "
                     f"{shown(row.get('replaymask'))} | "
                     f"{shown(row.get('mammoth_minus_replaymask'))} |")
    return "\n".join(lines)


def markdown_table(rows: list[dict]) -> str:
    """Mean +- standard deviation over seeds, one row per variant."""
    lines = ["| model | run | seeds | Class-IL | Task-IL |", "|---|---|---|---|---|"]
    for row in rows:
        same = row.get("equals_mammoth_own_model")
        note = "" if same is None else (" (= Mammoth's own, seed by seed)" if same
                                        else " (differs from Mammoth's own!)")
        lines.append(f"| {row['model']} | `{row['variant']}`{note} | {len(row['seeds'])} | "
                     f"{row['class_il_mean']:.2f} ± {row['class_il_std']:.2f} | "
                     f"{row['task_il_mean']:.2f} ± {row['task_il_std']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())

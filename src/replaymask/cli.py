"""Command line: ``replaymask run ...``. User mistakes end in one line on stderr, exit 2."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from .config import (
    METHODS,
    XDER_FIELDS,
    ConfigError,
    RunConfig,
    parse_mask_value,
    resolve,
    run_name,
)
from .data.benchmarks import BENCHMARKS

DEMO_ARGS = ["--model", "derpp", "--dataset", "seq-mnist", "--buffer-size", "200", "--gms"]
EXIT_USAGE, EXIT_DIVERGED, EXIT_IO = 2, 3, 4
DEFAULT_DB = "replaymask.db"
MAX_THREADS = 1024
SMALL_BATCH = 64  # rows per forward pass under which one CPU thread is fastest (measured)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise ConfigError(message)


def _flag(group, name: str, **kwargs):
    """``--buffer-size`` also answers to Mammoth's spelling ``--buffer_size``."""
    spellings = [name] + (["--" + name[2:].replace("-", "_")] if "-" in name[2:] else [])
    group.add_argument(*spellings, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="replaymask", description=__doc__)
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)
    run = commands.add_parser(
        "run", help="train one method on one benchmark and write result.json",
        description="Train one method on one class-incremental benchmark. With no arguments: "
                    "DER++ with GMS on seq-mnist, buffer 200.")
    _flag(run, "--model", choices=METHODS, default="derpp")
    _flag(run, "--dataset", choices=list(BENCHMARKS), default="seq-mnist")
    _flag(run, "--buffer-size", type=int, default=200)
    _flag(run, "--seed", type=int, default=0)
    hp = run.add_argument_group("hyper-parameters (default: the DER paper's best args)")
    _flag(hp, "--n-epochs", type=int)
    _flag(hp, "--batch-size", type=int)
    _flag(hp, "--minibatch-size", type=int, help="replay batch size")
    _flag(hp, "--lr", type=float)
    _flag(hp, "--alpha", type=float, help="DER/DER++ logit-replay weight")
    _flag(hp, "--beta", type=float, help="DER++ label-replay weight")
    gms = run.add_argument_group("General Masked Softmax")
    _flag(gms, "--gms", action="store_true",
          help="mask stream samples' softmax to their own task's classes")
    _flag(gms, "--gms-mask-value", type=str, default=None, metavar="M",
          help="value of masked logits: a float, -inf (hard masking, default) or 'detach'")
    _flag(gms, "--gms-on-buffer", action="store_true",
          help="also mask replayed samples to their own task's classes")
    _flag(gms, "--der-logits", choices=["stream", "post-step"], default="stream",
          help="DER logits stored: of the stream forward pass (Mammoth) or after the step")
    xder = run.add_argument_group("X-DER (default: Mammoth's best args for seq-cifar100)")
    _flag(xder, "--gamma", type=float, help="cap on transplanted logits (x true-class logit)")
    _flag(xder, "--lambd", type=float, help="weight of the future heads' SupCon loss")
    _flag(xder, "--constr-eta", type=float, help="weight of the margin constraints")
    _flag(xder, "--constr-margin", type=float, help="margin of the constraints")
    _flag(xder, "--simclr-temp", type=float, help="SupCon temperature")
    _flag(xder, "--simclr-batch-size", type=int, help="buffer items in the SupCon batch")
    _flag(xder, "--simclr-num-aug", type=int, help="augmented views per SupCon item")
    _flag(xder, "--past-constraint", action="store_true", default=None,
          help="also constrain past vs current heads")
    speed = run.add_argument_group("speed")
    _flag(speed, "--precision", choices=["fp32", "bf16"],
          help="bf16 autocast or fp32 (default: bf16 on CUDA, fp32 on CPU)")
    _flag(speed, "--channels-last", action=argparse.BooleanOptionalAction, default=None,
          help="channels-last memory format (default: on for CUDA ResNets)")
    _flag(speed, "--compile", action="store_true", help="torch.compile the backbone")
    _flag(speed, "--lr-milestones", type=_milestones, metavar="E1,E2",
          help="epochs of each task where the lr drops x0.1 (default: the benchmark's; "
               "seq-cifar100: 35,45; 'none' for a constant lr)")
    data = run.add_argument_group("data and output")
    _flag(data, "--class-order-seed", type=int, help="seeded permutation of the classes")
    _flag(data, "--data-root", type=Path,
          help="folder with the data: MNIST/FMNIST IDX files (torchvision layout ok), "
               "cifar-10-batches-py/, cifar-100-python/ or tiny-imagenet-200/")
    _flag(data, "--no-download", action="store_true", help="never try to download data")
    _flag(data, "--device", default="cpu")
    _flag(data, "--threads", type=int,
          help="CPU threads for torch (default: 1 for the MLP benchmarks when every batch is under "
               f"{SMALL_BATCH} rows, where thread hand-offs cost more than they save; "
               "else torch's choice); use 1 when running several runs side by side")
    _flag(data, "--out", type=Path, help="output folder (default: runs/<run name>)")
    _flag(data, "--no-progress", action="store_true", help="hide the progress bar")
    saving = run.add_argument_group("checkpoints")
    _flag(saving, "--checkpoint-dir", type=Path, metavar="DIR",
          help="save a checkpoint at the end of every task (and see --checkpoint-every)")
    _flag(saving, "--checkpoint-every", type=int, default=0, metavar="N",
          help="also every N training steps (default 0: task ends only)")
    _flag(saving, "--resume", action="store_true",
          help="continue from the newest sound checkpoint in --checkpoint-dir (refused if "
               "it was written for other settings; starts afresh if there is none)")
    _flag(run, "--analysis", action="store_true",
          help="record gradient norms into old/current/future logits, old-class softmax mass "
               "and old-logit drift every 100 steps (result.json 'analysis')")

    sweep = commands.add_parser(
        "sweep", help="run a grid of runs from a YAML file into the results database",
        description="Expand SWEEP.yaml (any run setting may be a list) and run every "
                    "combination not yet done in the database; resumable.")
    sweep.add_argument("sweep_file", type=Path, metavar="SWEEP.yaml")
    _flag(sweep, "--db", type=Path, default=Path(DEFAULT_DB), help="results database (SQLite)")
    _flag(sweep, "--workers", type=int, default=2, help="local worker processes (1 thread each)")
    _flag(sweep, "--retry-failed", action="store_true", help="run failed runs again")
    _flag(sweep, "--ray-address", metavar="auto|HOST:PORT",
          help="run on this Ray cluster (one task per run) instead of local workers")
    _flag(sweep, "--ray-cpus-per-run", type=float, default=1.0,
          help="CPUs a Ray task reserves (default 1)")
    _flag(sweep, "--data-root", type=Path)
    _flag(sweep, "--no-progress", action="store_true")
    _flag(sweep, "--checkpoint-dir", type=Path, metavar="DIR",
          help="per-run checkpoints (at every task end), so that a run whose worker died "
               "resumes where it was (default: DB.checkpoints/ next to the database)")
    _flag(sweep, "--no-checkpoints", action="store_true", help="runs restart from scratch")

    runs = commands.add_parser("runs", help="list the runs in the results database")
    _flag(runs, "--db", type=Path, default=Path(DEFAULT_DB))
    _flag(runs, "--status", choices=["done", "failed"])
    _flag(runs, "--model", choices=METHODS)
    _flag(runs, "--dataset", choices=list(BENCHMARKS))

    analyze = commands.add_parser(
        "analyze", help="why GMS changes stability: instrumented runs of one method with "
                        "plain softmax and GMS variants, plotted")
    _flag(analyze, "--model", choices=METHODS, default="er")
    _flag(analyze, "--dataset", choices=list(BENCHMARKS), default="seq-mnist")
    _flag(analyze, "--buffer-size", type=int, default=200)
    _flag(analyze, "--seed", type=int, default=0)
    _flag(analyze, "--mask-values", default="none,-inf,0,detach",
          help="comma-separated: none (plain softmax), -inf, a float, detach")
    _flag(analyze, "--data-root", type=Path)
    _flag(analyze, "--out", type=Path, default=Path("analysis"))

    report = commands.add_parser(
        "report", help="tables (Markdown, CSV) and PNG plots of the runs in the database")
    _flag(report, "--db", type=Path, default=Path(DEFAULT_DB))
    _flag(report, "--out", type=Path, default=Path("report"))
    _flag(report, "--no-plots", action="store_true", help="tables only (no matplotlib needed)")
    return parser


def config_from_args(args: argparse.Namespace) -> RunConfig:
    if not args.gms and (args.gms_mask_value is not None or args.gms_on_buffer):
        raise ConfigError("--gms-mask-value and --gms-on-buffer need --gms")
    xder_flags = [name for name in XDER_FIELDS if getattr(args, name) is not None]
    if xder_flags and args.model != "xder":
        raise ConfigError(f"--{xder_flags[0].replace('_', '-')} is an X-DER option: "
                          "it needs --model xder")
    mask_value = (parse_mask_value(args.gms_mask_value) if args.gms_mask_value is not None
                  else float("-inf"))
    return RunConfig(
        model=args.model, dataset=args.dataset, buffer_size=args.buffer_size, seed=args.seed,
        n_epochs=args.n_epochs, batch_size=args.batch_size, minibatch_size=args.minibatch_size,
        lr=args.lr, alpha=args.alpha, beta=args.beta, gms=args.gms, gms_mask_value=mask_value,
        gms_on_buffer=args.gms_on_buffer, der_logits=args.der_logits,
        class_order_seed=args.class_order_seed, device=args.device,
        lr_milestones=args.lr_milestones, precision=args.precision,
        channels_last=args.channels_last, compile=args.compile, gamma=args.gamma,
        lambd=args.lambd, constr_eta=args.constr_eta, constr_margin=args.constr_margin,
        simclr_temp=args.simclr_temp, simclr_batch_size=args.simclr_batch_size,
        simclr_num_aug=args.simclr_num_aug, past_constraint=args.past_constraint,
    )


def _milestones(text: str) -> tuple[int, ...]:
    if text.strip().lower() == "none":
        return ()
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated epochs or 'none', got {text!r}") from None


def default_threads(config: RunConfig) -> int | None:
    """1 for small CPU batches (e.g. S-MNIST ER: 3.2 s with 1 thread, 3.2-5.1 s with 2 on
    2 cores); None (torch's default) otherwise (DER++ with 128 replayed rows: 2 threads are
    ~20% faster)."""
    small = max(config.batch_size, config.minibatch_size) < SMALL_BATCH
    if config.device == "cpu" and BENCHMARKS[config.dataset].backbone == "mlp" and small:
        return 1
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["run"] or not argv:
        print("replaymask: no arguments: running the demo, replaymask run "
              + " ".join(DEMO_ARGS), file=sys.stderr)
        argv = ["run", *DEMO_ARGS]
    try:
        args = build_parser().parse_args(argv)
        # Python < 3.12's argparse reads `--flag=--` as an empty list
        listed = [name for name, value in vars(args).items() if isinstance(value, list)]
        if listed:
            raise ConfigError(f"argument --{listed[0].replace('_', '-')}: expected one argument")
        handlers = {"run": _main, "sweep": _sweep, "runs": _runs, "report": _report,
                    "analyze": _analyze}
        if args.command is None:
            raise ConfigError("choose a command: run, sweep, runs, report or analyze (see --help)")
        return handlers[args.command](args)
    except ConfigError as error:
        print(f"replaymask: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # e.g. `replaymask runs | head`
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (silences the exit-time flush)
        return 0
    except KeyboardInterrupt:
        print("replaymask: interrupted; nothing written", file=sys.stderr)
        return 130


def _main(args: argparse.Namespace) -> int:
    # torch is imported here, after the arguments were checked, so mistakes fail fast.
    import torch

    from .core.results import format_summary, write_result
    from .core.training import CheckpointMismatchError, DivergenceError, train
    from .data.benchmarks import load_benchmark
    from .data.mnist import DataError

    config, source = resolve(config_from_args(args))
    checkpointing = _checkpointing(args)
    if args.threads is not None and not 1 <= args.threads <= MAX_THREADS:
        raise ConfigError(f"--threads must be an integer >= 1 and <= {MAX_THREADS}, "
                          f"got {args.threads}")
    threads = args.threads or default_threads(config)
    if threads:
        torch.set_num_threads(threads)
    if config.device != "cpu" and not torch.cuda.is_available():
        raise ConfigError(f"--device {config.device}: no CUDA device is available")
    out_dir = args.out or Path("runs") / run_name(config)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {str(out_dir)!r} exists and is not a directory")
    _require_writable("--out", out_dir)
    try:
        benchmark = load_benchmark(config.dataset, data_root=args.data_root,
                                   class_order_seed=config.class_order_seed,
                                   download=not args.no_download)
    except DataError as error:
        raise ConfigError(str(error)) from None
    print(f"replaymask: {run_name(config)}; hyper-parameters: {source}; "
          f"lr {config.lr}, minibatch {config.minibatch_size}, alpha {config.alpha}, "
          f"beta {config.beta}; data: {benchmark.source}", file=sys.stderr)
    try:
        result = train(config, benchmark, hyperparameter_source=source,
                       progress=not args.no_progress, analysis=args.analysis,
                       checkpointing=checkpointing)
    except CheckpointMismatchError as error:
        raise ConfigError(str(error)) from None
    except OSError as error:  # e.g. a full disk while writing a checkpoint
        print(f"replaymask: error: {error}; the run stopped (resume it with --resume)",
              file=sys.stderr)
        return EXIT_IO
    except DivergenceError as error:
        print(f"replaymask: error: {error}; nothing written", file=sys.stderr)
        return EXIT_DIVERGED
    path = write_result(out_dir, result)
    print(format_summary(result))
    print(f"wrote {path} and {path.with_name('accuracy_matrix.csv')}")
    return 0


def _require_writable(flag: str, folder: Path) -> None:
    """``folder`` exists as a writable directory, or could be created as one."""
    existing = next(p for p in (folder, *folder.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {str(folder)!r} cannot be created: {str(existing)!r} "
                          "is not a writable directory")


def _checkpointing(args: argparse.Namespace):
    if args.checkpoint_every < 0:
        raise ConfigError(f"--checkpoint-every must be an integer >= 0, got "
                          f"{args.checkpoint_every}")
    if args.checkpoint_dir is None:
        if args.resume or args.checkpoint_every:
            raise ConfigError("--resume and --checkpoint-every need --checkpoint-dir")
        return None
    if args.analysis:
        raise ConfigError("--analysis cannot be combined with --checkpoint-dir")
    directory = args.checkpoint_dir
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"--checkpoint-dir {str(directory)!r} exists and is not a directory")
    _require_writable("--checkpoint-dir", directory)
    from .core.checkpoint import checkpoint_files
    from .core.training import Checkpointing

    if not args.resume and directory.is_dir() and checkpoint_files(directory):
        raise ConfigError(f"--checkpoint-dir {str(directory)!r} already holds checkpoints: "
                          "pass --resume to continue from them, or choose another folder")
    return Checkpointing(directory, args.checkpoint_every, args.resume,
                         warn=lambda message: print(f"replaymask: warning: {message}",
                                                    file=sys.stderr))


def _open_store(path: Path, create: bool):
    from .experiments.store import ResultsStore, StoreError

    try:
        return ResultsStore(path, create=create)
    except StoreError as error:
        raise ConfigError(str(error)) from None


def _sweep(args: argparse.Namespace) -> int:
    from .experiments.sweep import SweepError, connect_ray, load_sweep, run_sweep

    if args.workers < 1:
        raise ConfigError(f"--workers must be an integer >= 1, got {args.workers}")
    if args.data_root is not None and not args.data_root.is_dir():
        raise ConfigError(f"data root {str(args.data_root)!r} is not a readable directory")
    try:
        configs = load_sweep(args.sweep_file)
    except SweepError as error:
        raise ConfigError(str(error)) from None
    if not (math.isfinite(args.ray_cpus_per_run) and args.ray_cpus_per_run > 0):
        raise ConfigError(f"--ray-cpus-per-run must be > 0, got {args.ray_cpus_per_run}")
    if args.ray_address is not None:  # before the database is touched
        try:
            connect_ray(args.ray_address)
        except SweepError as error:
            raise ConfigError(str(error)) from None
    checkpoint_root = None
    if not args.no_checkpoints:
        checkpoint_root = args.checkpoint_dir or args.db.with_name(args.db.name + ".checkpoints")
        if checkpoint_root.exists() and not checkpoint_root.is_dir():
            raise ConfigError(f"--checkpoint-dir {str(checkpoint_root)!r} is not a directory")
    store = _open_store(args.db, create=True)
    try:
        summary = run_sweep(configs, store, workers=args.workers,
                            retry_failed=args.retry_failed,
                            data_root=str(args.data_root) if args.data_root else None,
                            progress=not args.no_progress, ray_address=args.ray_address,
                            ray_cpus_per_run=args.ray_cpus_per_run,
                            checkpoint_root=checkpoint_root)
    except SweepError as error:
        raise ConfigError(str(error)) from None
    print(f"sweep: {summary.total} runs: {summary.already_done} already done, "
          f"{summary.ran} run now ({summary.failed} failed), "
          f"{summary.skipped_failed} failed earlier and skipped (--retry-failed re-runs them); "
          f"results in {args.db}")
    return 1 if summary.failed else 0


def _runs(args: argparse.Namespace) -> int:
    store = _open_store(args.db, create=False)
    rows = [r for r in store.runs(args.status)
            if (args.model is None or r["config"]["model"] == args.model)
            and (args.dataset is None or r["config"]["dataset"] == args.dataset)]
    print(f"{'hash':16}  {'status':6}  {'model':6} {'dataset':10} {'buf':>5} {'seed':>4} "
          f"{'gms':>7}  {'class-il':>8} {'task-il':>8} {'wall s':>7}")
    for row in rows:
        config, metrics = row["config"], row["metrics"]
        gms = str(config["gms_mask_value"]) if config["gms"] else "-"
        scores = (f"{metrics['class_il']['average_accuracy']:8.2f} "
                  f"{metrics['task_il']['average_accuracy']:8.2f} {row['wall_time_s']:7.1f}"
                  if metrics else f"{'':8} {'':8} {'':7}  {row['error']}")
        print(f"{row['config_hash']}  {row['status']:6}  {config['model']:6} "
              f"{config['dataset']:10} {config['buffer_size']:5} {config['seed']:4} {gms:>7}  "
              + scores)
    print(f"{len(rows)} runs")
    return 0


def _report(args: argparse.Namespace) -> int:
    from .experiments.report import write_report

    store = _open_store(args.db, create=False)
    results = [row["result"] for row in store.runs("done")]
    if not results:
        raise ConfigError(f"{args.db} holds no finished runs to report")
    if not args.no_plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ConfigError("plots need matplotlib: pip install 'replaymask[report]', "
                              "or pass --no-plots") from None
    for path in write_report(results, args.out, plots=not args.no_plots):
        print(f"wrote {path}")
    return 0


def _analyze(args: argparse.Namespace) -> int:
    import json

    import torch

    from .core.results import atomic_write
    from .core.training import DivergenceError, train
    from .data.benchmarks import load_benchmark
    from .data.mnist import DataError
    from .experiments.plots import analysis_figure

    variants = {}
    for text in (part.strip() for part in args.mask_values.split(",")):
        gms = text.lower() != "none"
        config = RunConfig(model=args.model, dataset=args.dataset, buffer_size=args.buffer_size,
                           seed=args.seed, gms=gms,
                           gms_mask_value=parse_mask_value(text) if gms else float("-inf"))
        variants["plain softmax" if not gms else f"GMS m={text}"] = resolve(config)[0]
    try:
        benchmark = load_benchmark(args.dataset, data_root=args.data_root)
    except DataError as error:
        raise ConfigError(str(error)) from None
    records, summary = {}, {}
    for name, config in variants.items():
        torch.set_num_threads(default_threads(config) or torch.get_num_threads())
        print(f"analyze: {name} ...", file=sys.stderr)
        try:
            result = train(config, benchmark, progress=False, analysis=True)
        except DivergenceError as error:
            print(f"analyze: {name}: {error}; left out", file=sys.stderr)
            continue
        records[name] = result.analysis
        summary[name] = result.metrics["class_il"]["average_accuracy"]
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out / "analysis.json", json.dumps(
        {"configs": {n: c.to_dict() for n, c in variants.items()},
         "class_il_average_accuracy": summary, "records": records}, indent=1) + "\n")
    title = f"{args.model} on {args.dataset}, buffer {args.buffer_size}, seed {args.seed}"
    figure = analysis_figure(records, title, args.out / "analysis.png")
    print(f"{'variant':16} {'class-il':>8} {'grad old':>9} {'grad cur':>9} {'old mass':>9} "
          f"{'drift':>10}   (means over tasks 2..)")
    for name, rows in records.items():
        later = [r for r in rows if r["task"] > 0]
        def mean(key, rows=later):
            return sum(r[key] for r in rows) / len(rows)
        print(f"{name:16} {summary[name]:8.2f} {mean('grad_old'):9.4f} "
              f"{mean('grad_current'):9.4f} {mean('old_class_mass'):9.4f} "
              f"{mean('old_logit_drift'):10.3f}")
    print(f"wrote {args.out / 'analysis.json'} and {figure}")
    return 0

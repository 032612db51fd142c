"""Command line: ``replaymask run ...``, a thin layer over :mod:`replaymask.api`.

A run's flags are made from the settings' declarations (the core ones in
:mod:`replaymask.config`, each method's own in its file). User mistakes end in one line
on stderr and exit status 2. torch is imported only by the commands that train.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import re
import sys
from pathlib import Path

from .config import all_settings, core_settings, method_settings, methods_using, resolve
from .core.methods import declarations, method_names
from .errors import ConfigError
from .experiments.store import DEFAULT_DB

DEMO_ARGS = ["--model", "derpp", "--dataset", "seq-mnist", "--buffer-size", "200", "--gms"]
EXIT_USAGE, EXIT_DIVERGED, EXIT_IO = 2, 3, 4
TENSORBOARD_HELP = ("live logs for TensorBoard (the tensorboard extra) in DIR/<run name>_<hash>/: "
                    "the loss, Class-IL and Task-IL after each task, the accuracy matrix, the "
                    "run's settings as hyper-parameters (and --analysis's records)")
WANDB_HELP = ("the same logs for Weights & Biases (the wandb extra), kept in DIR/wandb/ "
              "(offline unless WANDB_MODE says otherwise; upload later with wandb sync)")
COMMANDS = ("run", "sweep", "search", "runs", "report", "analyze", "methods", "benchmarks")
IMPORT_HELP = ("import a module of yours first (a name found from the current folder, or a "
               ".py file; repeatable): its @replaymask.register_benchmark and "
               "@replaymask.register_backbone names become usable. This runs the module's "
               "code")
# The help groups of the core settings; a method's own settings form one more group.
GROUPS = {
    "run": ("model", "dataset", "buffer_size", "seed", "dataset_options", "backbone"),
    "hyper-parameters (default: the benchmark's protocol and the method's best arguments)":
        ("n_epochs", "batch_size", "minibatch_size", "lr"),
    "General Masked Softmax": ("gms", "gms_mask_value", "gms_on_buffer"),
    "speed": ("precision", "channels_last", "compile", "lr_milestones"),
    "scenario": ("class_order_seed", "n_tasks", "validation_fraction"),
    "data and output": ("device",),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise ConfigError(message)


def _flag(group, name: str, **kwargs):
    """``--buffer-size`` also answers to Mammoth's spelling ``--buffer_size``."""
    spellings = [name] + (["--" + name[2:].replace("-", "_")] if "-" in name[2:] else [])
    group.add_argument(*spellings, **kwargs)


def _setting_flag(group, setting, help_text: str | None = None) -> None:
    """A run setting's flag; given or not, nothing else decides its value here (the
    namespace holds only the settings the user typed: argparse.SUPPRESS)."""
    kwargs = {"dest": setting.name, "default": argparse.SUPPRESS,
              "help": help_text or setting.help}
    if setting.kind == "bool":  # --gms (--gms_on_buffer too), and --no-gms
        _flag(group, setting.flag, action="store_const", const=True, **kwargs)
        group.add_argument("--no-" + setting.flag[2:], action="store_const", const=False,
                           dest=setting.name, default=argparse.SUPPRESS,
                           help=argparse.SUPPRESS)
        return
    kwargs["type"] = setting.command_line_type()
    if setting.kind == "choice":
        kwargs["choices"] = setting.choices
    if setting.kind == "mask_value":
        kwargs["metavar"] = "M"
    if setting.kind == "epochs":
        kwargs["metavar"] = "E1,E2"
    if setting.kind == "options":  # --dataset-option KEY=VALUE, repeatable
        kwargs.update(type=parse_option, action=_CollectOptions, metavar="KEY=VALUE")
        group.add_argument("--dataset-option", "--dataset_option", **kwargs)
        return
    if setting.kind in ("benchmark", "backbone"):
        kwargs["metavar"] = "NAME"
    _flag(group, setting.flag, **kwargs)


def parse_option(text: str) -> tuple[str, object]:
    """``KEY=VALUE``, the value read as JSON where it is JSON (``4``, ``1e-3``, ``true``,
    ``null``, ``[[0, 1], [2]]``, ``"1.10"``), else as the text itself (``~/data``)."""
    import json

    key, equals, value = text.partition("=")
    if not equals or not key.strip():
        raise argparse.ArgumentTypeError(f"must be KEY=VALUE, got {text!r}")
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value
    return key.strip().replace("-", "_"), parsed


class _CollectOptions(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        key, value = values
        found = dict(getattr(namespace, self.dest, None) or {})
        found[key] = value
        setattr(namespace, self.dest, found)


def _run_setting_flags(parser) -> None:
    core = {setting.name: setting for setting in core_settings() if setting.command_line}
    for title, names in GROUPS.items():
        group = parser if title == "run" else parser.add_argument_group(title)
        for name in names:
            _setting_flag(group, core.pop(name))
    assert not core, f"settings without a help group: {sorted(core)}"
    own = parser.add_argument_group(
        "method settings (each for the methods named; default: their best arguments)")
    for name, setting in method_settings().items():
        _setting_flag(own, setting, f"{setting.help} [{', '.join(methods_using(name))}]")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="replaymask", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)
    run = commands.add_parser(
        "run", help="train one method on one benchmark and write result.json",
        description="Train one method on one class-incremental benchmark. With no arguments: "
                    "DER++ with GMS on seq-mnist, buffer 200. A setting that cannot change "
                    "the run (e.g. --gms-mask-value without --gms) is ignored, with a warning.")
    _run_setting_flags(run)
    _import_flag(run)
    data = run.add_argument_group("data, output and progress")
    _flag(data, "--data-root", type=Path,
          help="folder with the data: MNIST/FMNIST IDX files (torchvision layout ok), "
               "cifar-10-batches-py/, cifar-100-python/ or tiny-imagenet-200/")
    _flag(data, "--no-download", action="store_true", help="never try to download data")
    _flag(data, "--threads", type=int,
          help="CPU threads for torch (default: 1 for the MLP benchmarks when every batch is "
               "under 64 rows, where thread hand-offs cost more than they save; else torch's "
               "choice); use 1 when running several runs side by side")
    _flag(data, "--out", type=Path, help="output folder (default: runs/<run name>)")
    _flag(data, "--no-progress", action="store_true", help="hide the progress bar")
    _flag(data, "--tensorboard", type=Path, metavar="DIR", help=TENSORBOARD_HELP)
    _flag(data, "--wandb", type=Path, metavar="DIR", help=WANDB_HELP)
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
                    "combination not yet done in the database; resumable. Combinations that "
                    "differ only in settings that cannot matter are one run.")
    sweep.add_argument("sweep_file", type=Path, metavar="SWEEP.yaml")
    _import_flag(sweep)
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
    _flag(sweep, "--tensorboard", type=Path, metavar="DIR",
          help=TENSORBOARD_HELP + "; each run of the sweep in its own subfolder, so that "
               "TensorBoard's HParams view lists them side by side")
    _flag(sweep, "--wandb", type=Path, metavar="DIR", help=WANDB_HELP + "; one W&B run each")

    search = commands.add_parser(
        "search", help="tune every cell's hyper-parameters with Optuna on the validation "
                       "split, both sides alike (resumable); then write the selections' test "
                       "sweep",
        description="For each cell of SEARCH.yaml, a seeded Optuna TPE search of its space on "
                    "the validation split, every run recorded in the results database; then "
                    "a sweep file running each fully searched cell's selection on the test "
                    "set (see replaymask.experiments.search).")
    search.add_argument("search_file", type=Path, metavar="SEARCH.yaml")
    _import_flag(search)
    _flag(search, "--db", type=Path, default=Path(DEFAULT_DB), help="results database (SQLite)")
    _flag(search, "--journal", type=Path, metavar="FILE",
          help="the searches' Optuna journal (default: DB.search.journal beside the database)")
    _flag(search, "--workers", type=int, default=2, help="cells searched side by side")
    _flag(search, "--selected", type=Path, metavar="FILE",
          help="the test sweep of the selections (default: SEARCH-selected.yaml beside "
               "SEARCH.yaml)")
    _flag(search, "--data-root", type=Path)
    _flag(search, "--no-progress", action="store_true")
    _flag(search, "--no-test-runs", action="store_true",
          help="search only (by default, once both cells of a pair are fully searched, their "
               "selections' test runs follow, together in one worker)")
    _flag(search, "--dry-run", action="store_true",
          help="list the cells, what each searches, and the runs it asks for; run nothing")

    runs = commands.add_parser("runs", help="list the runs in the results database")
    _flag(runs, "--db", type=Path, default=Path(DEFAULT_DB))
    _flag(runs, "--status", choices=["done", "failed"])
    _flag(runs, "--model", choices=method_names())
    _flag(runs, "--dataset", metavar="NAME", help="only this benchmark's runs (its name, or "
                                                  "name@fingerprint for a user benchmark)")

    analyze = commands.add_parser(
        "analyze", help="why GMS changes stability: instrumented runs of one method with "
                        "plain softmax and GMS variants, plotted")
    _flag(analyze, "--model", default="er", help="the method (default: er)")
    _flag(analyze, "--dataset", default="seq-mnist")
    _import_flag(analyze)
    _flag(analyze, "--buffer-size", type=int, default=200)
    _flag(analyze, "--seed", default="0",
          help="a seed, or comma-separated seeds: each variant runs with each, and the "
               "summary gives the mean and 95%% interval over them (e.g. 0,1,2,3,4)")
    _flag(analyze, "--mask-values", default="none,-inf,0,detach",
          help="comma-separated: none (plain softmax), -inf, a float, detach")
    _flag(analyze, "--lr", type=float, help="the learning rate (default: the best-args row's; "
                                            "needed for a benchmark without best arguments)")
    _flag(analyze, "--backbone", metavar="NAME", help="the network (default: the one the "
                                                      "benchmark's inputs suit)")
    analyze.add_argument("--dataset-option", "--dataset_option", dest="dataset_options",
                         type=parse_option, action=_CollectOptions, metavar="KEY=VALUE",
                         help="a keyword option of a registered benchmark (repeatable)")
    analyze.add_argument("--setting", dest="settings", type=parse_option,
                         action=_CollectOptions, metavar="KEY=VALUE",
                         help="any other run setting, as a sweep file's key (repeatable; "
                              "e.g. alpha=0.3, minibatch_size=32, replay_classes=earlier)")
    _flag(analyze, "--data-root", type=Path)
    _flag(analyze, "--out", type=Path, default=Path("analysis"))

    report = commands.add_parser(
        "report", help="tables (Markdown, CSV) and PNG plots of the runs in the database")
    _flag(report, "--db", type=Path, default=Path(DEFAULT_DB))
    _flag(report, "--out", type=Path, default=Path("report"))
    _flag(report, "--no-plots", action="store_true", help="tables only (no matplotlib needed)")
    _flag(report, "--search", type=Path, metavar="SEARCH.yaml",
          help="add the tuned-against-tuned comparisons of this search (its selections' "
               "test runs in the database), first")
    _flag(report, "--journal", type=Path, metavar="FILE",
          help="the search's Optuna journal (default: DB.search.journal beside the database)")
    _flag(report, "--mechanism", type=Path, metavar="FOLDER",
          help="add mechanism.md: the plan's ablation tests (family F3) over the "
               "'replaymask analyze' outputs in FOLDER's subfolders (docs/study/mechanism.sh)")

    methods = commands.add_parser("methods", help="list the methods, their own settings and "
                                                  "best arguments")
    methods.add_argument("--verified", action="store_true",
                         help="instead: what each method was checked against (Mammoth, side "
                              "by side) and the numbers, from results/vs_mammoth_methods.json "
                              f"(or the file ${VERIFIED_FILE_VARIABLE} names)")
    benchmarks = commands.add_parser(
        "benchmarks", help="list the benchmarks and networks --dataset and --backbone take")
    _import_flag(benchmarks)
    return parser


def _import_flag(parser) -> None:
    parser.add_argument("--import", dest="imports", action="append", default=[],
                        metavar="MODULE", help=IMPORT_HELP)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["run"] or not argv:
        print("replaymask: no arguments: running the demo, replaymask run "
              + " ".join(DEMO_ARGS), file=sys.stderr)
        argv = ["run", *DEMO_ARGS]
    try:
        args = build_parser().parse_args(argv)
        # Python < 3.12's argparse reads `--flag=--` as an empty list
        listed = [name for name, value in vars(args).items()
                  if isinstance(value, list) and name != "imports"]
        if listed:
            raise ConfigError(f"argument --{listed[0].replace('_', '-')}: expected one argument")
        handlers = {"run": _main, "sweep": _sweep, "search": _search, "runs": _runs,
                    "report": _report,
                    "analyze": _analyze, "methods": _methods, "benchmarks": _benchmarks}
        if args.command is None:
            raise ConfigError(f"choose a command: {', '.join(COMMANDS)} (see --help)")
        if args.command not in ("sweep", "search") and getattr(args, "imports", None):
            from .plugins import import_modules

            import_modules(args.imports)
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


def entry_point() -> None:
    """The ``replaymask`` command (and ``python -m replaymask``): :func:`main`, then exit.

    Before exiting, every object alive is frozen out of the garbage collector: the
    interpreter's final collection would otherwise walk the ~170,000 objects that
    importing torch creates, about 0.3 s of every run's wall time on this project's
    2-core machines (BENCHMARKS.md section 3). Nothing is skipped: files, databases and
    atexit handlers are closed and run as usual."""
    status = main()
    gc.freeze()
    sys.exit(status)


def _warn(message: str) -> None:
    print(f"replaymask: warning: {message}", file=sys.stderr)


def _main(args: argparse.Namespace) -> int:
    from .api import run_config
    from .core.results import DivergenceError, format_summary
    from .data.sources import DataError

    request = {name: getattr(args, name) for name in all_settings() if hasattr(args, name)}
    config = resolve(request, origin="command line")
    out_dir = args.out or Path("runs") / config.name

    def announce(line: str) -> None:  # once every check has passed and the data is loaded
        for name, why in config.provenance.ignored:
            _warn(f"{all_settings()[name].flag} ignored: {why}")
        print(f"replaymask: {line}", file=sys.stderr)
        if args.tensorboard is not None:
            from .experiments.tensorboard import run_folder

            print(f"replaymask: TensorBoard logs in {run_folder(args.tensorboard, config)} "
                  f"(view: tensorboard --logdir {args.tensorboard})", file=sys.stderr)
        if args.wandb is not None:
            print(f"replaymask: W&B run kept in {args.wandb / 'wandb'} (offline unless "
                  "WANDB_MODE says otherwise; upload: wandb sync)", file=sys.stderr)

    try:
        result = run_config(
            config, data_root=args.data_root, download=not args.no_download, out=out_dir,
            progress=not args.no_progress, threads=args.threads, analysis=args.analysis,
            checkpoint_dir=args.checkpoint_dir, checkpoint_every=args.checkpoint_every,
            resume=args.resume, tensorboard=args.tensorboard, wandb=args.wandb, log=announce,
            warn=_warn)
    except DataError as error:
        raise ConfigError(str(error)) from None
    except OSError as error:  # e.g. a full disk while writing a checkpoint
        print(f"replaymask: error: {error}; the run stopped (resume it with --resume)",
              file=sys.stderr)
        return EXIT_IO
    except DivergenceError as error:
        print(f"replaymask: error: {error}; nothing written", file=sys.stderr)
        return EXIT_DIVERGED
    print(format_summary(result))
    print(f"wrote {out_dir / 'result.json'} and {out_dir / 'accuracy_matrix.csv'}")
    return 0


def _open_store(path: Path, create: bool):
    from .experiments.store import ResultsStore, StoreError

    try:
        return ResultsStore(path, create=create)
    except StoreError as error:
        raise ConfigError(str(error)) from None


def _sweep(args: argparse.Namespace) -> int:
    from .experiments import sweep as sweeps

    if args.workers < 1:
        raise ConfigError(f"--workers must be an integer >= 1, got {args.workers}")
    if args.data_root is not None and not args.data_root.is_dir():
        raise ConfigError(f"data root {str(args.data_root)!r} is not a readable directory")
    try:
        planned = sweeps.read_sweep(args.sweep_file, tuple(args.imports))
    except sweeps.SweepError as error:
        raise ConfigError(str(error)) from None
    if not (math.isfinite(args.ray_cpus_per_run) and args.ray_cpus_per_run > 0):
        raise ConfigError(f"--ray-cpus-per-run must be > 0, got {args.ray_cpus_per_run}")
    if args.tensorboard is not None or args.wandb is not None:
        from .experiments.execution import log_folders

        log_folders(args.tensorboard, args.wandb)
    if args.ray_address is not None:  # before the database is touched
        try:
            sweeps.connect_ray(args.ray_address)
        except sweeps.SweepError as error:
            raise ConfigError(str(error)) from None
    checkpoint_root = None
    if not args.no_checkpoints:
        checkpoint_root = args.checkpoint_dir or args.db.with_name(args.db.name + ".checkpoints")
        if checkpoint_root.exists() and not checkpoint_root.is_dir():
            raise ConfigError(f"--checkpoint-dir {str(checkpoint_root)!r} is not a directory")
    if planned.merged:
        print(f"sweep: {planned.combinations} combinations are {len(planned.configs)} distinct "
              f"runs ({planned.merged} differ only in settings that cannot matter, such as a "
              "mask value without gms)", file=sys.stderr)
    store = _open_store(args.db, create=True)
    try:
        summary = sweeps.run_sweep(planned.configs, store, workers=args.workers,
                                   retry_failed=args.retry_failed,
                                   data_root=str(args.data_root) if args.data_root else None,
                                   progress=not args.no_progress, ray_address=args.ray_address,
                                   ray_cpus_per_run=args.ray_cpus_per_run,
                                   checkpoint_root=checkpoint_root,
                                   tensorboard_root=_text(args.tensorboard),
                                   wandb_root=_text(args.wandb), imports=planned.imports,
                                   import_folders=planned.import_folders)
    except sweeps.SweepError as error:
        raise ConfigError(str(error)) from None
    print(f"sweep: {summary.total} runs: {summary.already_done} already done, "
          f"{summary.ran} run now ({summary.failed} failed), "
          f"{summary.skipped_failed} failed earlier and skipped (--retry-failed re-runs them); "
          f"results in {args.db}"
          + (f"; TensorBoard logs in {args.tensorboard}" if args.tensorboard is not None else "")
          + (f"; W&B runs in {args.wandb}" if args.wandb is not None else ""))
    return 1 if summary.failed else 0


def _search(args: argparse.Namespace) -> int:
    from .experiments import search as searches
    from .experiments.sweep import SweepError

    if args.workers < 1:
        raise ConfigError(f"--workers must be an integer >= 1, got {args.workers}")
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise ConfigError("replaymask search needs Optuna: pip install 'replaymask[search]'"
                          ) from None
    try:
        planned = searches.read_search(args.search_file, tuple(args.imports))
    except SweepError as error:
        raise ConfigError(str(error)) from None
    runs = len(planned.cells) * planned.trials * len(planned.seeds)
    print(f"search: {len(planned.cells)} cells x {planned.trials} trials x "
          f"{len(planned.seeds)} seeds = at most {runs} validation runs, then "
          f"{len(planned.cells) * len(planned.test_seeds)} test runs", file=sys.stderr)
    if args.dry_run:
        for cell in planned.cells:
            searched = ", ".join(d.name for d in planned.dimensions(cell))
            print(f"{searches.cell_key(cell)}  searches: {searched}")
        return 0
    journal = args.journal or args.db.with_name(args.db.name + ".search.journal")
    selected = args.selected or args.search_file.with_name(
        args.search_file.stem + "-selected.yaml")
    for flag, path in (("--journal", journal), ("--selected", selected)):
        from .experiments.execution import require_writable

        require_writable(flag, path.parent)
    _open_store(args.db, create=True).close()
    try:
        outcomes = searches.run_search(planned, args.db, journal, workers=args.workers,
                                       progress=not args.no_progress,
                                       data_root=_text(args.data_root),
                                       test=not args.no_test_runs)
    except searches.RunCrashed as error:
        print(f"replaymask: error: search: {error}", file=sys.stderr)
        return 1
    for outcome in outcomes:
        chosen = outcome.selected
        failed = sum(value is None for _, value in outcome.trials)
        best = (f"{chosen[1]:6.2f}  " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float)
                                                   else f"{k}={v}"
                                                   for k, v in chosen[0].items())
                if chosen else "  none")
        print(f"{searches.cell_key(outcome.cell)}  {len(outcome.trials)} trials "
              f"({failed} failed)  best {best}")
    from .core.results import atomic_write

    atomic_write(selected, searches.selected_sweep(planned, outcomes))
    print(f"search: wrote {selected}, the selections' test runs as a sweep file"
          + ("" if args.no_test_runs else " (done already for every complete pair)"))
    return 0


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _runs(args: argparse.Namespace) -> int:
    from .experiments.cells import dataset_label

    if args.dataset is not None and re.fullmatch(
            r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}(@[0-9a-f]{1,64})?", args.dataset) is None:
        raise ConfigError(f"--dataset must be a benchmark's name, or NAME@FINGERPRINT, got "
                          f"{args.dataset!r}")
    store = _open_store(args.db, create=False)

    def on_benchmark(config: dict) -> bool:  # NAME, or NAME@FINGERPRINT (a prefix of it)
        label = dataset_label(config)
        return args.dataset is None or args.dataset in (config["dataset"], label) or (
            "@" in args.dataset and label.startswith(args.dataset))

    every = store.runs(args.status)
    if args.dataset is not None and not any(on_benchmark(r["config"]) for r in every):
        held = sorted({dataset_label(r["config"]) for r in every})
        raise ConfigError(f"--dataset {args.dataset}: no run of {args.db} is on it (its "
                          f"benchmarks: {', '.join(held) or 'none'})")
    rows = [r for r in every if (args.model is None or r["config"]["model"] == args.model)
            and on_benchmark(r["config"])]
    rows.sort(key=lambda row: dataset_label(row["config"]))  # grouped by benchmark
    width = max([11, *(len(dataset_label(row["config"])) for row in rows)])
    print(f"{'hash':16}  {'status':6}  {'model':9} {'dataset':{width}} {'buf':>5} {'seed':>4} "
          f"{'gms':>7}  {'class-il':>8} {'task-il':>8} {'wall s':>7}")
    for row in rows:
        config, metrics = row["config"], row["metrics"]
        gms = str(config["gms_mask_value"]) if config["gms"] else "-"
        scores = (f"{metrics['class_il']['average_accuracy']:8.2f} "
                  f"{metrics['task_il']['average_accuracy']:8.2f} {row['wall_time_s']:7.1f}"
                  if metrics else f"{'':8} {'':8} {'':7}  {row['error']}")
        print(f"{row['config_hash']}  {row['status']:6}  {config['model']:9} "
              f"{dataset_label(config):{width}} {config['buffer_size']:5} {config['seed']:4} "
              f"{gms:>7}  " + scores)
    print(f"{len(rows)} runs")
    return 0


def _report(args: argparse.Namespace) -> int:
    from .experiments.report import write_report

    store = _open_store(args.db, create=False)
    finished = store.runs("done")
    results = [row["result"] for row in finished]
    if not results:
        raise ConfigError(f"{args.db} holds no finished runs to report")
    if not args.no_plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ConfigError("plots need matplotlib: pip install 'replaymask[report]', "
                              "or pass --no-plots") from None
    from .experiments.search import SEARCH_TRIAL_FAILURE

    failed = [row["config"] for row in store.runs("failed")  # a search's: reported in F1
              if not (row["error"] or "").endswith(SEARCH_TRIAL_FAILURE)]
    tuned, plan = None, ""
    if args.search is not None:
        from .experiments import search as searches
        from .experiments.sweep import SweepError
        from .experiments.tuned import tuned_pairs

        try:
            planned = searches.read_search(args.search)
        except SweepError as error:
            raise ConfigError(str(error)) from None
        journal = args.journal or args.db.with_name(args.db.name + ".search.journal")
        if not journal.is_file():
            raise ConfigError(f"--journal {str(journal)!r}: no such search journal")
        tuned = tuned_pairs(planned, searches.read_outcomes(planned, journal), store.outcome)
        from .experiments.tuned import plan_line

        plan_file = args.search.parent / "plan.md"
        if plan_file.is_file():
            first = min((row["finished_at"] for row in finished
                         if searches.is_trial_run(row["result"])), default=None)
            plan = plan_line(plan_file, first)
    analyses = None
    if args.mechanism is not None:
        from .experiments import mechanism

        if not args.mechanism.is_dir():
            raise ConfigError(f"--mechanism {str(args.mechanism)!r}: no such folder")
        try:
            analyses = mechanism.read_analyses(args.mechanism)
        except (ValueError, KeyError, OSError) as error:
            raise ConfigError(f"--mechanism {str(args.mechanism)!r}: {error}") from None
        if not analyses:
            raise ConfigError(f"--mechanism {str(args.mechanism)!r}: no */analysis.json "
                              "in it (replaymask analyze --out writes them)")
    for path in write_report(results, args.out, plots=not args.no_plots, failed=failed,
                             tuned=tuned, plan=plan):
        print(f"wrote {path}")
    if analyses is not None:
        from .core.results import atomic_write

        atomic_write(args.out / "mechanism.md", mechanism.ablation_markdown(analyses))
        print(f"wrote {args.out / 'mechanism.md'}")
    return 0


VERIFIED_FILE_VARIABLE = "REPLAYMASK_VERIFIED_FILE"
NOT_IN_MAMMOTH = {"lode", "ss_replay"}  # no such model in Mammoth (checked at e75a491)


def verified_file() -> Path:
    """The side-by-side records ``methods --verified`` reads: ``$REPLAYMASK_VERIFIED_FILE``,
    else ``results/vs_mammoth_methods.json`` at the root of the repository this package
    sits in (written by ``benchmarks/vs_mammoth.py --methods``)."""
    named = os.environ.get(VERIFIED_FILE_VARIABLE)
    if named:
        return Path(named)
    return Path(__file__).resolve().parents[2] / "results" / "vs_mammoth_methods.json"


def _last_run_date(record: dict) -> str:
    """The newest run of a side-by-side record (either tool, any variant): when its numbers
    were last measured (a record's own date is when it was started); else that date."""
    holders = [record.get("replaymask", {}), record.get("mammoth", {}),
               *record.get("replaymask_variants", [])]
    dates = [str(run["date"]) for holder in holders for run in holder.get("runs", [])
             if run.get("date")]
    return max(dates, default=str(record.get("date", "?")))


def _verified(path: Path) -> int:
    import json
    import statistics

    if not path.is_file():
        print(f"no side-by-side records: {path} does not exist "
              "(benchmarks/vs_mammoth.py --methods writes it)")
        return 0
    try:
        records = json.loads(path.read_text())
        by_method: dict[str, list] = {}
        for record in records:
            by_method.setdefault(record["method"], []).append(record)
    except (ValueError, TypeError, KeyError) as error:
        raise ConfigError(f"{path}: not a list of side-by-side records ({error})") from None
    earlier = path.parent / "vs_mammoth.json"
    if earlier.is_file():
        for record in _first_side_by_side(earlier):
            by_method.setdefault(record["method"], [record])

    def mean(values):
        return statistics.mean(values) if values else math.nan

    print(f"Checked side by side with Mammoth ({path}): final average accuracy, mean over "
          "seeds; diff = replaymask - Mammoth")
    print(f"{'method':10} {'checked against':27} {'last run':10} {'buffer':>6} {'seeds':>5}  "
          f"{'Class-IL: ours':>14} {'Mammoth':>7} {'diff':>6}  "
          f"{'Task-IL: ours':>13} {'Mammoth':>7} {'diff':>6}")
    for name in declarations():
        if name not in by_method:
            print(f"{name:10} " + ("not in Mammoth" if name in NOT_IN_MAMMOTH
                                   else "not checked against Mammoth"))
            continue
        for record in sorted(by_method[name], key=lambda r: r.get("buffer_size", 0)):
            ours, theirs = record.get("replaymask", {}), record.get("mammoth", {})
            against = f"Mammoth {str(record.get('mammoth_commit', '?'))[:7]}, " \
                      f"{record.get('dataset', 'seq-mnist')}"
            seeds = min(len(ours.get("class_il", [])), len(theirs.get("class_il", [])))
            cells = []
            for key in ("class_il", "task_il"):
                a, b = mean(ours.get(key, [])), mean(theirs.get(key, []))
                cells.append(f"{a:7.2f} {b:7.2f} {a - b:+6.2f}")
            print(f"{name:10} {against:27} {_last_run_date(record)[:10]:10} "
                  f"{record.get('buffer_size', '?'):>6} {seeds:>5}  {'':6} {cells[0]}  "
                  f"{'':5} {cells[1]}")
            paper = record.get("published")
            if paper:
                compared = paper.get("compared_with", "replaymask")
                runs = ours if compared == "replaymask" else next(
                    (v for v in record.get("replaymask_variants", [])
                     if v["name"] == compared), {})
                n = len(runs.get("class_il", []))
                print(f"{'':10} {paper.get('source', 'published')}: Class-IL "
                      f"{paper['class_il']:.2f}, Task-IL {paper['task_il']:.2f}; {compared} "
                      f"({n} seeds): {mean(runs.get('class_il', [])):.2f}, "
                      f"{mean(runs.get('task_il', [])):.2f}")
            if theirs.get("timed_out_seeds"):
                print(f"{'':10} Mammoth stopped (time limit) for seeds "
                      f"{', '.join(map(str, theirs['timed_out_seeds']))}")
    return 0


def _first_side_by_side(path: Path) -> list[dict]:
    """ER and DER++ as ``benchmarks/vs_mammoth.py``'s first mode recorded them
    (``results/vs_mammoth.json``, beside the methods' records): replaymask against Mammoth
    with ``--num_workers 0`` (the same arithmetic), as records of the methods' form; none
    where the file is not that."""
    import json

    try:
        data = json.loads(path.read_text())
        versions, runs = data["versions"], data["runs"]
        found = []
        for model in sorted({run["model"] for run in runs}):
            sides = {}
            for name, variant in (("replaymask", "replaymask"),
                                  ("mammoth", "mammoth --num_workers 0")):
                chosen = sorted((r for r in runs if r["model"] == model
                                 and r["variant"] == variant), key=lambda r: r["seed"])
                sides[name] = {key: [r[key] for r in chosen] for key in ("class_il", "task_il")}
            if sides["replaymask"]["class_il"] and sides["mammoth"]["class_il"]:
                found.append({"method": model, "buffer_size": 200, "dataset": "seq-mnist",
                              "date": versions.get("date", "?"),
                              "mammoth_commit": versions.get("mammoth_commit", "?"), **sides})
        return found
    except (ValueError, TypeError, KeyError, AttributeError):
        return []


def _methods(args: argparse.Namespace) -> int:
    if getattr(args, "verified", False):
        return _verified(verified_file())
    for method in declarations().values():
        kind = "replay buffer" + (" with logits" if method.stores_logits else "") \
            if method.uses_buffer else "no buffer"
        tables = ", ".join(method.best_args) or f"those of {method.best_args_of}"
        print(f"{method.name:10} {method.label}: {method.summary}")
        print(f"{'':10} {kind}; best arguments for {tables}")
        gms = method.gms
        print(f"{'':10} GMS ({gms.kind}): {gms.how}" if gms.applies
              else f"{'':10} GMS does not apply: {gms.how}")
        for setting in method.settings:
            print(f"{'':10} {setting.flag}: {setting.help}")
    return 0


def _benchmarks(args: argparse.Namespace) -> int:
    from .core.networks import BUILTIN_BACKBONES, backbone_names
    from .data.protocols import BENCHMARKS
    from .data.registry import benchmark_names, registered_entries

    print("benchmarks (--dataset):")
    for name, spec in BENCHMARKS.items():
        sizes = f"{spec.n_tasks} tasks x {spec.classes_per_task} classes"
        print(f"  {name:16} built in: {spec.dataset}, {sizes}, inputs "
              f"{'x'.join(map(str, spec.input_shape))}")
    registered = registered_entries()
    for name in benchmark_names():
        if name in registered:
            entry = registered[name]
            print(f"  {name:16} registered by {entry.module}: {entry.signature}")
    print("networks (--backbone; default: the one the benchmark's inputs suit):")
    for name in backbone_names():
        what = {"mlp": "built in: 784-100-100-K MLP (flat or 1x28x28 inputs)",
                "resnet18": "built in: reduced-stem ResNet-18 (3-channel images)"}
        print(f"  {name:16} {what[name] if name in BUILTIN_BACKBONES else 'registered'}")
    return 0


def _analyze(args: argparse.Namespace) -> int:
    import json

    from .api import run_config
    from .core.results import DivergenceError, atomic_write
    from .data.sources import DataError
    from .experiments import mechanism
    from .experiments.plots import analysis_figure

    seeds = [part.strip() for part in args.seed.split(",")]
    own = {"model", "dataset", "buffer_size", "seed", "gms", "gms_mask_value", "lr",
           "backbone", "dataset_options"}
    for key in getattr(args, "settings", None) or {}:
        if key in own:
            raise ConfigError(f"--setting {key}: analyze sets it itself (use its own flag: "
                              f"--{key.replace('_', '-')}, or --mask-values for gms)")
    variants: dict[str, list] = {}
    for text in (part.strip() for part in args.mask_values.split(",")):
        gms = text.lower() != "none"
        name = "plain softmax" if not gms else f"GMS m={text}"
        for seed in seeds:
            settings = {"model": args.model, "dataset": args.dataset,
                        "buffer_size": args.buffer_size, "seed": _integer("--seed", seed),
                        "gms": gms, "lr": args.lr, "backbone": args.backbone,
                        "dataset_options": getattr(args, "dataset_options", None),
                        **(getattr(args, "settings", None) or {})}
            if gms:
                settings["gms_mask_value"] = text
            variants.setdefault(name, []).append(resolve(settings, origin="command line"))
    runs: dict[str, dict] = {}
    for name, configs in variants.items():
        for config in configs:
            print(f"analyze: {name}, seed {config.seed} ...", file=sys.stderr)
            try:
                result = run_config(config, data_root=args.data_root, progress=False,
                                    analysis=True)
            except DataError as error:
                raise ConfigError(str(error)) from None
            except DivergenceError as error:
                print(f"analyze: {name}, seed {config.seed}: {error}; left out",
                      file=sys.stderr)
                continue
            runs.setdefault(name, {})[config.seed] = {
                "config": config.to_dict(), "class_il": result.class_il,
                "task_confusion": result.task_confusion, "records": result.analysis,
                "summary": mechanism.run_summary(result.class_il, result.analysis,
                                                 result.task_confusion)}
    summaries = {name: [run["summary"] for run in by_seed.values()]
                 for name, by_seed in runs.items()}
    title = (f"{args.model} on {args.dataset}, buffer {args.buffer_size}, "
             f"seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)}")
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out / "analysis.json", json.dumps(
        {"title": title, "runs": runs,
         "summary": {name: mechanism.over_seeds(found) for name, found in summaries.items()}},
        indent=1) + "\n")
    atomic_write(args.out / "analysis.md", mechanism.markdown(summaries, title))
    figure = analysis_figure({name: _mean_records([run["records"] for run in by_seed.values()])
                              for name, by_seed in runs.items()}, title,
                             args.out / "analysis.png")
    print(f"{'variant':16} {'class-il':>8} {'grad old':>9} {'grad cur':>9} {'old mass':>9} "
          f"{'drift':>10} {'->later':>8} {'->earlier':>9}   (means over seeds; tasks 2..)")
    for name, found in summaries.items():
        means = {key: value[0] for key, value in mechanism.over_seeds(found).items()}
        print(f"{name:16} {means['class_il']:8.2f} {means['grad_old']:9.4f} "
              f"{means['grad_current']:9.4f} {means['old_class_mass']:9.4f} "
              f"{means.get('old_logit_drift', float('nan')):10.3f} "
              f"{means['into_later_task']:8.2f} {means['into_earlier_task']:9.2f}")
    print(f"wrote {args.out / 'analysis.json'}, {args.out / 'analysis.md'} and {figure}")
    return 0


def _integer(flag: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{flag} must be integers separated by commas, got {text!r}") from None


def _mean_records(runs: list[list[dict]]) -> list[dict]:
    """The instrumentation of runs with the same steps, averaged step by step."""
    averaged = []
    for rows in zip(*runs, strict=True):
        merged = dict(rows[0])
        for key, value in rows[0].items():
            if key not in ("task", "step") and value is not None:
                merged[key] = sum(row[key] for row in rows) / len(rows)
        averaged.append(merged)
    return averaged

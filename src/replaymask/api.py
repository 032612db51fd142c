"""replaymask from Python: run one configuration, run a sweep, read a results database.

    >>> import replaymask
    >>> result = replaymask.run(model="derpp", dataset="seq-mnist", gms=True)  # doctest: +SKIP
    >>> result.class_il, result.accuracy_matrix["class_il"][-1]                # doctest: +SKIP

The command line is a thin layer over these functions. A mistake in the settings raises
:class:`~replaymask.errors.ConfigError` (one line naming it) before anything is trained
or written; missing data raises :class:`~replaymask.data.sources.DataError`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .config import resolve
from .core.methods import MethodDeclaration, declarations
from .core.results import RunResult, write_result
from .core.run_config import RunConfig
from .data.protocols import BENCHMARKS
from .errors import ConfigError
from .experiments.live_logs import live_logs
from .experiments.store import DEFAULT_DB, ResultsStore
from .experiments.sweep import Sweep, SweepSummary, expand_grids, read_sweep, run_sweep

MAX_THREADS = 1024
SMALL_BATCH = 64  # rows per forward pass under which one CPU thread is fastest (measured)


def run(model: str | None = None, dataset: str | None = None, *,
        data_root: str | Path | None = None, download: bool = True,
        out: str | Path | None = None, progress: bool = True, threads: int | None = None,
        analysis: bool = False, checkpoint_dir: str | Path | None = None,
        checkpoint_every: int = 0, resume: bool = False,
        tensorboard: str | Path | None = None, wandb: str | Path | None = None,
        **settings) -> RunResult:
    """Train one method on one benchmark and return its :class:`RunResult`.

    ``settings`` are run settings by name (``buffer_size=200``, ``seed=1``, ``gms=True``,
    ``gms_mask_value=0.0``, ``lr=0.05``, a method's own such as ``alpha=0.3``); what is
    not given comes from the benchmark's protocol and the method's best arguments.
    Settings that cannot change the run (a mask value without ``gms``) are dropped with a
    warning. Nothing is written unless ``out`` names a folder (``result.json`` and
    ``accuracy_matrix.csv``). See :func:`run_config` for the other arguments.
    """
    request = {key: value for key, value in (("model", model), ("dataset", dataset))
               if value is not None}
    config = resolve({**request, **settings}, origin="Python")
    for name, why in config.provenance.ignored:
        warnings.warn(f"replaymask: {name} ignored: {why}", stacklevel=2)
    return run_config(config, data_root=data_root, download=download, out=out,
                      progress=progress, threads=threads, analysis=analysis,
                      checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every,
                      resume=resume, tensorboard=tensorboard, wandb=wandb)


def run_config(config: RunConfig, *, data_root: str | Path | None = None,
               download: bool = True, out: str | Path | None = None, progress: bool = True,
               threads: int | None = None, analysis: bool = False,
               checkpoint_dir: str | Path | None = None, checkpoint_every: int = 0,
               resume: bool = False, tensorboard: str | Path | None = None,
               wandb: str | Path | None = None, log: Callable[[str], None] | None = None,
               warn: Callable[[str], None] | None = None) -> RunResult:
    """Train a resolved configuration (:func:`replaymask.config.resolve`).

    ``threads``: CPU threads for torch during the run (default: 1 for the MLP benchmarks
    when every batch is under 64 rows, where thread hand-offs cost more than they save;
    else torch's choice). ``analysis`` records the stability instrumentation
    (``result.analysis``). ``checkpoint_dir`` saves a checkpoint at every task end (and
    every ``checkpoint_every`` steps); ``resume`` continues from the newest sound one.
    ``tensorboard`` names a folder for live TensorBoard logs (the ``tensorboard`` extra):
    the run writes ``<tensorboard>/<run name>_<hash>/``
    (:mod:`replaymask.experiments.tensorboard`); ``wandb`` one for Weights & Biases (the
    ``wandb`` extra; offline unless ``WANDB_MODE`` says otherwise:
    :mod:`replaymask.experiments.weights_and_biases`). ``log`` receives a line naming the run,
    its hyper-parameters and data once they are loaded; ``warn`` receives warnings about
    unreadable checkpoints.
    """
    if threads is not None and not (isinstance(threads, int) and 1 <= threads <= MAX_THREADS):
        raise ConfigError(f"--threads must be an integer >= 1 and <= {MAX_THREADS}, "
                          f"got {threads}")
    out = Path(out) if out is not None else None
    if out is not None:
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {str(out)!r} exists and is not a directory")
        require_writable("--out", out)
    checkpointing = _checkpointing(checkpoint_dir, checkpoint_every, resume, analysis,
                                   warn or (lambda message: None))
    tensorboard, wandb = log_folders(tensorboard, wandb)
    import torch  # after every check: mistakes fail fast

    from .core.training import CheckpointMismatchError, train
    from .data.benchmarks import load_benchmark

    if config.device != "cpu" and not torch.cuda.is_available():
        raise ConfigError(f"--device {config.device}: no CUDA device is available")
    benchmark = load_benchmark(config.dataset, data_root=data_root,
                               class_order_seed=config.class_order_seed, download=download,
                               n_tasks=config.n_tasks,
                               validation_fraction=config.validation_fraction)
    if log is not None:
        log(f"{config.name}; hyper-parameters: {config.provenance.summary()}; lr {config.lr}, "
            f"minibatch {config.minibatch_size}"
            + "".join(f", {name} {value}" for name, value in config.method_settings.items())
            + f"; data: {benchmark.source}")
    observer = live_logs(config, tensorboard, wandb)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads or default_threads(config) or previous_threads)
    result = None
    try:
        result = train(config, benchmark, progress=progress, analysis=analysis,
                       checkpointing=checkpointing, observer=observer)
    except CheckpointMismatchError as error:
        raise ConfigError(str(error)) from None
    finally:
        torch.set_num_threads(previous_threads)
        if observer is not None:
            observer.finish(result)  # None: the run raised (see each logger)
    if out is not None:
        write_result(out, result)
    return result


def default_threads(config: RunConfig) -> int | None:
    """1 for small CPU batches (e.g. S-MNIST ER: 3.2 s with 1 thread, 3.2-5.1 s with 2 on
    2 cores); None (torch's default) otherwise (DER++ with 128 replayed rows: 2 threads are
    ~20% faster)."""
    small = max(config.batch_size, config.minibatch_size) < SMALL_BATCH
    if config.device == "cpu" and BENCHMARKS[config.dataset].backbone == "mlp" and small:
        return 1
    return None


def require_writable(flag: str, folder: Path) -> None:
    """``folder`` exists as a writable directory, or could be created as one."""
    existing = next(p for p in (folder, *folder.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {str(folder)!r} cannot be created: {str(existing)!r} "
                          "is not a writable directory")


def log_folders(tensorboard: str | Path | None, wandb: str | Path | None
                ) -> tuple[Path | None, Path | None]:
    """The folders for live logs (None: no such logs), checked: each one's extra is
    installed and the folder is (or can be made) a writable directory; else a one-line
    ConfigError."""
    from .experiments import tensorboard as tensorboard_logs
    from .experiments import weights_and_biases as wandb_logs

    checked = []
    for flag, folder, require_package in (("--tensorboard", tensorboard,
                                           tensorboard_logs.require_package),
                                          ("--wandb", wandb, wandb_logs.require_package)):
        if folder is not None:
            require_package()
            folder = Path(folder)
            if folder.exists() and not folder.is_dir():
                raise ConfigError(f"{flag} {str(folder)!r} exists and is not a directory")
            require_writable(flag, folder)
        checked.append(folder)
    return checked[0], checked[1]


def _checkpointing(directory, every: int, resume: bool, analysis: bool,
                   warn: Callable[[str], None]):
    if not isinstance(every, int) or every < 0:
        raise ConfigError(f"--checkpoint-every must be an integer >= 0, got {every}")
    if directory is None:
        if resume or every:
            raise ConfigError("--resume and --checkpoint-every need --checkpoint-dir")
        return None
    if analysis:
        raise ConfigError("--analysis cannot be combined with --checkpoint-dir")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"--checkpoint-dir {str(directory)!r} exists and is not a directory")
    require_writable("--checkpoint-dir", directory)
    from .core.checkpoint import checkpoint_files
    from .core.training import Checkpointing

    if not resume and directory.is_dir() and checkpoint_files(directory):
        raise ConfigError(f"--checkpoint-dir {str(directory)!r} already holds checkpoints: "
                          "pass --resume to continue from them, or choose another folder")
    return Checkpointing(directory, every, resume, warn=warn)


def plan_sweep(grids: str | Path | Mapping | list[Mapping]) -> Sweep:
    """The runs of a sweep: a YAML file's path, one grid (a mapping of settings to a value
    or a list of values), or a list of grids; every combination resolved once."""
    if isinstance(grids, (str, Path)):
        return read_sweep(grids)
    return expand_grids([grids] if isinstance(grids, Mapping) else list(grids),
                        origin="Python")


def sweep(grids: str | Path | Mapping | list[Mapping], db: str | Path = DEFAULT_DB, *,
          workers: int = 2, retry_failed: bool = False, data_root: str | Path | None = None,
          progress: bool = True, ray_address: str | None = None,
          ray_cpus_per_run: float = 1.0, checkpoint_dir: str | Path | None = None,
          checkpoints: bool = True, tensorboard: str | Path | None = None,
          wandb: str | Path | None = None) -> SweepSummary:
    """Run every run of ``grids`` (see :func:`plan_sweep`) not yet done in the results
    database ``db``, on ``workers`` local processes or a Ray cluster; resumable.

    Each run checkpoints at every task end into ``checkpoint_dir`` (default:
    ``DB.checkpoints/`` beside the database), so that a run whose worker died continues
    where it was; ``checkpoints=False`` restarts such runs instead. With ``tensorboard``
    (a folder), every run writes its live TensorBoard logs into its own subfolder there
    (on Ray: a folder every node can write to), so that TensorBoard's HParams view lists
    the runs side by side; with ``wandb``, every run is a W&B run kept there (offline unless
    ``WANDB_MODE`` says otherwise).
    """
    planned = plan_sweep(grids)
    tensorboard, wandb = log_folders(tensorboard, wandb)
    db = Path(db)
    checkpoint_root = None
    if checkpoints:
        checkpoint_root = Path(checkpoint_dir) if checkpoint_dir is not None \
            else db.with_name(db.name + ".checkpoints")
    store = ResultsStore(db, create=True)
    try:
        return run_sweep(planned.configs, store, workers=workers, retry_failed=retry_failed,
                         data_root=str(data_root) if data_root is not None else None,
                         progress=progress, ray_address=ray_address,
                         ray_cpus_per_run=ray_cpus_per_run, checkpoint_root=checkpoint_root,
                         tensorboard_root=str(tensorboard) if tensorboard is not None else None,
                         wandb_root=str(wandb) if wandb is not None else None)
    finally:
        store.close()


@dataclass(frozen=True)
class RunRecord:
    """One run of a results database."""

    hash: str
    status: str  # "done" or "failed"
    config: dict
    result: dict | None  # result.json's content, for a finished run
    error: str | None
    wall_time_s: float | None
    finished_at: str
    attempts: int

    def row(self) -> dict:
        """Flat: the configuration's settings, then the summary metrics (for a table)."""
        row = {"hash": self.hash, "status": self.status, **self.config}
        if self.result is not None:
            for setting, metrics in self.result["metrics"].items():
                for name, value in metrics.items():
                    row[f"{setting}_{name}"] = value
            row["wall_time_s"] = self.wall_time_s
            row["hyperparameter_source"] = self.result.get("hyperparameter_source")
        else:
            row["error"] = self.error
        return row


def load_runs(db: str | Path = DEFAULT_DB, status: str | None = None) -> list[RunRecord]:
    """The runs stored in ``db`` (oldest first), optionally only those with ``status``."""
    if status not in (None, "done", "failed"):
        raise ConfigError(f"status must be 'done', 'failed' or None, got {status!r}")
    store = ResultsStore(db, create=False)
    try:
        rows = store.runs(status)
    finally:
        store.close()
    return [RunRecord(hash=row["config_hash"], status=row["status"], config=row["config"],
                      result=row["result"], error=row["error"],
                      wall_time_s=row["wall_time_s"], finished_at=row["finished_at"],
                      attempts=row["attempts"]) for row in rows]


def runs_dataframe(db: str | Path = DEFAULT_DB, status: str | None = "done"):
    """The runs of ``db`` as a pandas DataFrame, one row each (see :meth:`RunRecord.row`)."""
    try:
        import pandas
    except ImportError:
        raise ImportError("runs_dataframe needs pandas: pip install pandas "
                          "(load_runs gives the same records without it)") from None
    return pandas.DataFrame([record.row() for record in load_runs(db, status)])


def methods() -> dict[str, MethodDeclaration]:
    """Every method, by its ``--model`` name, as its file declares it."""
    return dict(declarations())

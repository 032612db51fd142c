"""The one way a run is set up and trained: :func:`execute`.

``replaymask.run``, ``replaymask run``, sweep workers (local and Ray), ``replaymask
analyze`` and the reproduction scripts all come here with a resolved configuration, the
benchmark (or None: the configuration names it), the network (or None: likewise) and the
run's options, so that a run is the same whichever door it came in by.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..core.results import RunResult, write_result
from ..core.run_config import RunConfig
from ..errors import ConfigError

MAX_THREADS = 1024
SMALL_BATCH = 64  # rows per forward pass under which one CPU thread is fastest (measured)


@dataclass(frozen=True)
class RunOptions:
    """How to run (not what: that is the configuration). Make one with
    :func:`run_options`, which checks every value before anything is loaded.

    ``data_root``/``download``: where a built-in benchmark's data is; ``out``: a folder for
    ``result.json`` and ``accuracy_matrix.csv`` (None: nothing written); ``threads``:
    torch's CPU threads (None: :func:`default_threads`); ``analysis``: the stability
    instrumentation; ``checkpointing``: a :class:`~replaymask.core.training.Checkpointing`
    or None; ``tensorboard``/``wandb``: folders for live logs; ``log``: told a line naming
    the run once its data is loaded.
    """

    data_root: str | Path | None = None
    download: bool = True
    out: Path | None = None
    progress: bool = True
    threads: int | None = None
    analysis: bool = False
    checkpointing: object = None
    tensorboard: Path | None = None
    wandb: Path | None = None
    log: Callable[[str], None] | None = None


def run_options(*, data_root=None, download: bool = True, out=None, progress: bool = True,
                threads: int | None = None, analysis: bool = False, checkpoint_dir=None,
                checkpoint_every: int = 0, resume: bool = False, tensorboard=None, wandb=None,
                log: Callable[[str], None] | None = None,
                warn: Callable[[str], None] | None = None) -> RunOptions:
    """:class:`RunOptions`, checked: a one-line ConfigError names the first bad one."""
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
    return RunOptions(data_root=data_root, download=download, out=out, progress=progress,
                      threads=threads, analysis=analysis, checkpointing=checkpointing,
                      tensorboard=tensorboard, wandb=wandb, log=log)


def execute(config: RunConfig, benchmark=None, net=None,
            options: RunOptions = RunOptions()) -> RunResult:
    """Train ``config`` and return its :class:`RunResult` (written to ``options.out`` too).

    ``benchmark``: the Benchmark the configuration was resolved on (checked against its
    fingerprint), or None to load the built-in or registered benchmark it names; the
    run's scenario (class order, task count, validation split) is applied here. ``net``:
    the nn.Module or factory the configuration's network was resolved from, where it is
    an object. A mismatch or a network that does not fit the benchmark is a one-line
    ConfigError before anything is trained or written.
    """
    import torch

    from ..core.networks import build_network, check_network
    from ..core.training import CheckpointMismatchError, train
    from .live_logs import live_logs

    if config.device != "cpu" and not torch.cuda.is_available():
        raise ConfigError(f"--device {config.device}: no CUDA device is available")
    base = benchmark_for(config, benchmark, options.data_root, options.download)
    if net is not None and config.network.kind not in ("module", "factory"):
        raise ConfigError("net= was given, but the configuration was resolved without it: "
                          "resolve it with backbone=net")
    if net is not None or config.network.kind == "registered":
        from ..core.networks import choose_network

        now = choose_network(net if net is not None else config.backbone, config.benchmark)
        if (now.kind, now.fingerprint) != (config.network.kind, config.backbone_fingerprint):
            raise ConfigError(f"the network {config.network.name} is not the one the "
                              "configuration was resolved with (its fingerprint differs: "
                              "its code or initial weights changed)")
    run_benchmark = base.with_scenario(config.class_order_seed, config.n_tasks,
                                       config.validation_fraction)
    # the network on one batch, before anything is announced or written (the run builds
    # its own after seeding: the draws here do not change it)
    check_network(build_network(config.network, run_benchmark.info, net), run_benchmark,
                  config.network.name or config.benchmark.default_backbone)
    if options.log is not None:
        options.log(f"{config.name}; hyper-parameters: {config.provenance.summary()}; "
                    f"lr {config.lr}, minibatch {config.minibatch_size}"
                    + "".join(f", {name} {value}"
                              for name, value in config.method_settings.items())
                    + f"; data: {run_benchmark.source}")
    observer = live_logs(config, options.tensorboard, options.wandb)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(options.threads or default_threads(config) or previous_threads)
    result = None
    try:
        result = train(config, run_benchmark, progress=options.progress,
                       analysis=options.analysis, checkpointing=options.checkpointing,
                       observer=observer, net=net)
    except CheckpointMismatchError as error:
        raise ConfigError(str(error)) from None
    finally:
        torch.set_num_threads(previous_threads)
        if observer is not None:
            observer.finish(result)  # None: the run raised (see each logger)
    if options.out is not None:
        write_result(options.out, result)
    return result


def benchmark_for(config: RunConfig, given=None, data_root=None, download: bool = True):
    """The benchmark ``config`` runs on, before its scenario: ``given`` (checked against
    the configuration), else the built-in one loaded by name, else the registered one
    built with the configuration's options (checked against its fingerprint)."""
    from ..data.benchmarks import load_benchmark
    from ..data.registry import registered_benchmark

    if given is not None:
        if (given.name != config.dataset or given.fingerprint != config.benchmark_fingerprint
                or given.scenario):
            raise ConfigError(f"the benchmark given ({given.name}) is not the one the "
                              f"configuration was resolved on ({config.benchmark.label})")
        return given
    if config.benchmark_fingerprint is None:
        return load_benchmark(config.dataset, data_root=data_root, download=download)
    if config.benchmark.origin.get("registered") is None:
        raise ConfigError(f"benchmark {config.dataset!r} was made from objects "
                          f"({config.benchmark.origin.get('kind', '?')}): pass it as dataset=")
    built = registered_benchmark(config.dataset, dict(config.dataset_options))
    if built.fingerprint != config.benchmark_fingerprint:
        raise ConfigError(f"benchmark {config.dataset!r} has changed since the run was "
                          f"planned: its fingerprint is now {built.fingerprint[:16]}, the "
                          f"configuration's {config.benchmark_fingerprint[:16]}")
    return built


def default_threads(config: RunConfig) -> int | None:
    """1 for the built-in MLP with small CPU batches (e.g. S-MNIST ER: 3.2 s with 1 thread,
    3.2-5.1 s with 2 on 2 cores); None (torch's default) otherwise (DER++ with 128
    replayed rows: 2 threads are ~20% faster)."""
    small = max(config.batch_size, config.minibatch_size) < SMALL_BATCH
    network = config.backbone or config.benchmark.default_backbone
    if config.device == "cpu" and network == "mlp" and small:
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
    from . import tensorboard as tensorboard_logs
    from . import weights_and_biases as wandb_logs

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
    from ..core.checkpoint import checkpoint_files
    from ..core.training import Checkpointing

    if not resume and directory.is_dir() and checkpoint_files(directory):
        raise ConfigError(f"--checkpoint-dir {str(directory)!r} already holds checkpoints: "
                          "pass --resume to continue from them, or choose another folder")
    return Checkpointing(directory, every, resume, warn=warn)

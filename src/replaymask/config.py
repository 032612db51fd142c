"""Resolving a run: what the user set, checked once and completed into a frozen RunConfig.

The settings of a run are declared in two places: the core ones below, and each method's
own in its file (:mod:`replaymask.core.methods`). :func:`resolve` takes what the user set
(typed on the command line, read from a sweep file, or passed from Python), checks every
value against its declaration, drops what cannot matter for this run, fills the rest
from the benchmark's protocol and the method's best arguments, and returns a
:class:`~replaymask.core.run_config.RunConfig` that remembers where each value came from.
Nothing downstream resolves it again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import cache

from .core.methods import declaration, declarations, method_names
from .core.networks import choose_network
from .core.run_config import MethodSettings, Provenance, RunConfig
from .core.settings import Setting
from .data.protocols import BENCHMARKS, BenchmarkInfo
from .data.registry import benchmark_info, canonical_options, unknown_benchmark
from .errors import ConfigError

# Largest accepted seed + 1: numpy's global seed (``np.random.seed``) takes 32 bits.
SEED_LIMIT = 2**32
# Largest accepted count (buffer size, epochs, batch sizes): more than any benchmark's
# training set (TinyImageNet: 100,000 images), small enough that a typo such as an extra
# run of zeros fails here rather than as an allocation failure deep inside torch.
MAX_COUNT = 10**6
PRECISIONS = ("fp32", "bf16")
# At most half of the training data held out for validation.
MAX_VALIDATION_FRACTION = 0.5


@cache
def core_settings() -> tuple[Setting, ...]:
    """The settings every run has, whatever its method."""
    return (
        Setting("model", "choice", choices=method_names(), default="derpp",
                help="the method"),
        Setting("dataset", "benchmark", default="seq-mnist",
                help=f"the benchmark: {', '.join(BENCHMARKS)}, or a name a module of yours "
                     "registers (see --import)"),
        Setting("dataset_options", "options",
                help="keyword options of a registered benchmark (KEY=VALUE, repeatable)"),
        Setting("backbone", "backbone",
                help="the network: mlp, resnet18 or a registered name (default: the one the "
                     "benchmark's inputs suit)"),
        Setting("benchmark_fingerprint", "fingerprint", command_line=False,
                help="the user benchmark's content fingerprint: checked, not chosen"),
        Setting("backbone_fingerprint", "fingerprint", command_line=False,
                help="the network's fingerprint: checked, not chosen"),
        Setting("buffer_size", "int", minimum=0, maximum=MAX_COUNT, default=200,
                help="replay buffer size (reservoir sampling); 0 for methods without one"),
        Setting("seed", "int", minimum=0, maximum=SEED_LIMIT - 1, default=0,
                help="seed of the initial weights, data order, buffer and augmentation"),
        Setting("n_epochs", "int", minimum=1, maximum=MAX_COUNT,
                help="epochs per task (default: the benchmark's)"),
        Setting("batch_size", "int", minimum=1, maximum=MAX_COUNT,
                help="stream batch size (default: the benchmark's)"),
        Setting("minibatch_size", "int", minimum=1, maximum=MAX_COUNT,
                help="replay batch size (default: the best-args row's, else the batch size)"),
        Setting("lr", "float", minimum=0, above_minimum=True,
                help="learning rate (default: the best-args row's)"),
        Setting("gms", "bool", default=False,
                help="mask stream samples' softmax to their own task's classes"),
        Setting("gms_mask_value", "mask_value", default=-math.inf,
                help="value of the masked logits: a number, -inf (hard masking, the "
                     "default) or 'detach'; needs --gms"),
        Setting("gms_on_buffer", "bool", default=False,
                help="also mask replayed samples to their own task's classes; needs --gms"),
        Setting("class_order_seed", "int", minimum=0, maximum=SEED_LIMIT - 1,
                help="a seeded permutation of the classes (default: the natural order)"),
        Setting("n_tasks", "int", minimum=2, maximum=MAX_COUNT,
                help="split the classes into this many tasks of equal size (default: the "
                     "benchmark's; seq-mnist: 5 tasks of 2, or 2 of 5, or 10 of 1)"),
        Setting("validation_fraction", "float", minimum=0, maximum=MAX_VALIDATION_FRACTION,
                help="hold out this fraction of every class's training inputs (a fixed "
                     "split) and report accuracy on them instead of the test set, to "
                     "select hyper-parameters (default: the benchmark's, 0 for the built-in "
                     "ones: the test set)"),
        Setting("device", "device", default="cpu", help="cpu, cuda or cuda:N"),
        Setting("lr_milestones", "epochs",
                help="epochs of each task where the lr drops x0.1 (default: the "
                     "benchmark's; seq-cifar100: 35,45; 'none' for a constant lr)"),
        Setting("precision", "choice", choices=PRECISIONS,
                help="bf16 autocast or fp32 (default: bf16 on CUDA, fp32 on CPU)"),
        Setting("channels_last", "bool",
                help="channels-last memory format (default: on for CUDA ResNets)"),
        Setting("compile", "bool", default=False, help="torch.compile the backbone"),
    )


@cache
def method_settings() -> dict[str, Setting]:
    """Every method's own settings, by name (a setting several methods declare, such as
    ``alpha``, is one)."""
    found: dict[str, Setting] = {}
    for method in declarations().values():
        for setting in method.settings:
            found.setdefault(setting.name, setting)
    return found


def methods_using(name: str) -> list[str]:
    return [m.name for m in declarations().values() if any(s.name == name for s in m.settings)]


@cache
def all_settings() -> dict[str, Setting]:
    """Every setting a run may be given: the keys of a sweep file, the run's flags."""
    return {**{s.name: s for s in core_settings()}, **method_settings()}


def resolve(request: Mapping[str, object] | None = None, /, *, origin: str = "",
            **settings) -> RunConfig:
    """The run that ``request`` (and/or keyword ``settings``) describes, checked and complete.

    Keys are setting names (``model``, ``dataset``, ``buffer_size``, ``lr``, ``gms``,
    ``gms_mask_value``, a method's own such as ``alpha``, ...); a value None means "the
    default". ``origin`` says where they were set, for the provenance ("command line",
    "sweep file study.yaml").

    Settings that cannot change the run are dropped, so that equal runs have equal
    configurations (and one hash): a mask value or ``gms_on_buffer`` without ``gms``,
    a setting the chosen method does not declare, a buffer size for a method without
    a buffer. The provenance lists them with the reason. Raises ConfigError naming the
    first invalid setting, or the settings to pass where the method has no best
    arguments for the benchmark.
    """
    given = {**(request or {}), **settings}
    known = all_settings()
    for name in given:
        if name not in known:
            raise ConfigError(f"unknown setting {name!r} (known: {', '.join(sorted(known))})")
    values = {name: known[name].check(value) for name, value in given.items()}
    values = {name: value for name, value in values.items() if value is not None}

    core = {s.name: s for s in core_settings()}
    model = values.get("model", core["model"].default)
    method = declaration(model)
    info = _benchmark_info(values)
    protocol, dataset = info.protocol, info.name
    own = {s.name: s for s in method.settings}
    if values.get("gms", False) and not method.gms.applies:
        raise ConfigError(f"--gms does not apply to {model}: {method.gms.how}")

    ignored = {}
    for name in values:
        if name not in core and name not in own:
            owners = ", ".join(methods_using(name))
            ignored[name] = f"{model} has no such setting (it is {owners}'s)"
    if not values.get("gms", False):
        ignored.update({name: "needs gms" for name in ("gms_mask_value", "gms_on_buffer")
                        if name in values})
    if not method.uses_buffer and "buffer_size" in values:
        ignored["buffer_size"] = f"{model} keeps no buffer"
    kept = {name: value for name, value in values.items() if name not in ignored}

    def setting(name):  # the user's value, else the declared default
        return kept.get(name, core[name].default)

    n_classes = info.num_classes
    n_tasks = kept.get("n_tasks", info.n_tasks)
    if "n_tasks" in kept and n_classes % n_tasks:
        divisors = [str(d) for d in range(2, n_classes + 1) if n_classes % d == 0]
        raise ConfigError(f"--n-tasks {n_tasks} does not split {dataset}'s {n_classes} "
                          f"classes into equal tasks (one of {', '.join(divisors)})")
    # --n-tasks N is N equal tasks: the benchmark's own split only where it is that already
    own_split = "n_tasks" not in kept or (n_tasks == info.n_tasks and info.equal_tasks)
    equal_tasks = "n_tasks" in kept or info.equal_tasks
    if method.needs_equal_tasks and not equal_tasks:
        raise ConfigError(f"{model} needs tasks of equal size ({method.needs_equal_tasks}); "
                          f"{dataset}'s are {', '.join(map(str, info.task_sizes))} classes: "
                          f"pass --n-tasks N to split it into N equal tasks")
    network = choose_network(kept.get("backbone"), info)
    for name, found in (("benchmark_fingerprint", info.fingerprint),
                        ("backbone_fingerprint", network.fingerprint)):
        if name in kept and kept[name] != found:
            what = dataset if name == "benchmark_fingerprint" else f"network {network.name}"
            raise ConfigError(f"{what} has changed: its fingerprint is now {found}, the "
                              f"configuration's {kept[name]}")
    buffer_size = setting("buffer_size") if method.uses_buffer else 0
    row = method.best_args_row(dataset, buffer_size, protocol.best_args_from)
    # a row may carry the stream batch (the DER paper's FDR, GSS and HAL: 128)
    default_batch = (known["batch_size"].check(row.values["batch_size"])
                     if row and "batch_size" in row.values else protocol.batch_size)
    batch_size = kept.get("batch_size", default_batch)
    from_benchmark = [name for name in ("n_epochs", "batch_size", "lr_milestones")
                      if name not in kept and not (name == "batch_size" and row
                                                   and "batch_size" in row.values)]
    if protocol.validation_fraction and "validation_fraction" not in kept:
        from_benchmark.append("validation_fraction")
    tunable = ("lr", "minibatch_size", *own)
    from_row = [name for name in (*tunable, "batch_size")
                if name not in kept and row and name in row.values]
    chosen = {name: kept[name] if name in kept
              else known[name].check(row.values[name]) if name in from_row
              else own[name].default if name in own else None for name in tunable}
    chosen["minibatch_size"] = chosen["minibatch_size"] or batch_size  # Mammoth's default
    missing = [name for name, value in chosen.items() if value is None]
    if missing:
        flags = ", ".join(known[name].flag for name in missing)
        raise ConfigError(f"{model} has no best arguments for {dataset}: pass {flags}")

    cuda = setting("device").startswith("cuda")
    gms = setting("gms")
    return RunConfig(
        model=model,
        dataset=dataset,
        buffer_size=buffer_size,
        seed=setting("seed"),
        n_epochs=kept.get("n_epochs", protocol.n_epochs),
        batch_size=batch_size,
        minibatch_size=chosen["minibatch_size"],
        lr=chosen["lr"],
        gms=gms,
        gms_mask_value=setting("gms_mask_value") if gms else -math.inf,
        gms_on_buffer=setting("gms_on_buffer") if gms else False,
        class_order_seed=kept.get("class_order_seed"),
        n_tasks=None if own_split else n_tasks,
        validation_fraction=kept.get("validation_fraction", protocol.validation_fraction),
        device=setting("device"),
        lr_milestones=kept.get("lr_milestones", protocol.lr_milestones),
        precision=kept.get("precision", "bf16" if cuda else "fp32"),
        channels_last=kept.get("channels_last",
                               cuda and (network.name or info.default_backbone) == "resnet18"),
        compile=setting("compile"),
        benchmark_fingerprint=info.fingerprint,
        dataset_options=MethodSettings(dict(info.options)),
        backbone=network.name,
        backbone_fingerprint=network.fingerprint,
        method_settings=MethodSettings({name: chosen[name] for name in own}),
        omitted_defaults=tuple((s.name, s.default) for s in method.settings if s.omit_default),
        provenance=Provenance(
            origin=origin,
            user_set=tuple(kept),
            ignored=tuple(ignored.items()),
            best_args=row.note if row else "",
            best_args_values=_unset_values(tunable, row, own, known, default_batch),
            from_best_args=tuple(from_row),
            from_benchmark=tuple(from_benchmark),
            overridable=(*tunable, "n_epochs", "batch_size", "lr_milestones"),
        ),
        benchmark=info,
        network=network,
    )


def _unset_values(tunable, row, own, known, batch_size) -> tuple:
    """What each tunable setting is when the user sets none: the best-args row's value,
    else the method's declared default (the replay batch: the stream batch), as the
    provenance records them (None: no value, e.g. ``lr`` without a row)."""
    values = {name: known[name].check(row.values[name]) if row and name in row.values
              else own[name].default if name in own else None for name in tunable}
    values["minibatch_size"] = values["minibatch_size"] or batch_size
    return tuple(values.items())


def _benchmark_info(values: dict) -> BenchmarkInfo:
    """The benchmark a run is on: a built-in or registered name (with its options), or a
    Benchmark object."""
    dataset = values.get("dataset", "seq-mnist")
    options = values.get("dataset_options") or {}
    if not isinstance(dataset, str):  # a Benchmark object
        if options:
            raise ConfigError("dataset options are for registered benchmarks; this one is an "
                              "object: build it with the options you want")
        if dataset.fingerprint is None:
            raise ConfigError(f"a built-in benchmark is given by its name: dataset="
                              f"{dataset.name!r} (and class_order_seed=, n_tasks=, "
                              "validation_fraction= for its scenario)"
                              if dataset.name in BENCHMARKS else
                              f"benchmark {dataset.name!r} has no fingerprint: make it with "
                              "replaymask.benchmark_from_tensors (or _datasets, _folder)")
        if dataset.scenario:
            shown = ", ".join(f"{name}={value!r}" for name, value in dataset.scenario)
            raise ConfigError(f"benchmark {dataset.name!r} has a run's scenario applied "
                              f"({shown}): pass the benchmark itself and {shown}")
        return dataset.info
    canonical_options(options)
    if dataset not in BENCHMARKS:
        from .data.registry import is_registered

        if not is_registered(dataset):
            raise unknown_benchmark(dataset)
    return benchmark_info(dataset, options)

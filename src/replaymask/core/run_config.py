"""The description of one run: a frozen, resolved configuration and where its values came from.

A :class:`RunConfig` is made once, by :func:`replaymask.config.resolve`, from what the user
set; everything downstream (the training loop, sweep workers, Ray tasks, checkpoints,
the results database) receives it as it is and never resolves it again.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields

from ..data.protocols import BenchmarkInfo

# Written into every run's dictionary, whatever its method (with this value where the
# method has no such setting): the hashes of the runs stored before methods declared
# their own settings were computed over dictionaries that held them.
LEGACY_METHOD_KEYS = {"alpha": None, "beta": None, "der_logits": "stream"}
# Settings added with the vision benchmarks: left out of the dictionary at these values,
# so that the hashes of earlier runs stay valid; but only where the value is implied
# (fp32 and no channels-last on the CPU, no milestones where the benchmark has none), so
# that the dictionary alone describes the run.
LEFT_OUT_WHEN = {"lr_milestones": ((),), "precision": ("fp32",), "channels_last": (False,),
                 "compile": (False,), "validation_fraction": (0.0,)}


class MethodSettings(Mapping):
    """A method's own settings, read-only: ``settings.alpha`` or ``settings["alpha"]``
    (also a registered benchmark's keyword options: plain data, read-only)."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping | None = None):
        object.__setattr__(self, "_values", dict(values or {}))

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"this method has no setting {name!r}") from None

    def __setattr__(self, name, value):
        raise AttributeError("a method's settings are read-only")

    def __getitem__(self, name: str):
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __hash__(self) -> int:
        return hash(json.dumps(self._values, sort_keys=True, default=repr))

    def __eq__(self, other) -> bool:
        return isinstance(other, Mapping) and dict(self) == dict(other)

    def __repr__(self) -> str:
        return f"MethodSettings({self._values!r})"

    def __reduce__(self):
        return MethodSettings, (self._values,)


@dataclass(frozen=True)
class NetworkChoice:
    """Which network a run builds (:mod:`replaymask.core.networks` makes and builds it):
    ``name`` is None for the benchmark's default network, else a built-in or registered
    name or an object's class or factory's qualified name; ``fingerprint`` is None for
    the built-in networks. An object (``kind`` "module" or "factory") is not kept here:
    the run is given it beside its configuration."""

    name: str | None = None
    fingerprint: str | None = None
    kind: str = "built-in"  # "built-in" | "registered" | "module" | "factory"
    factory: str = ""  # a registered network's factory, qualified

    def to_dict(self, benchmark: BenchmarkInfo) -> dict:
        """For result.json: which network, and where it came from."""
        found = {"name": self.name or benchmark.default_backbone, "kind": self.kind}
        if self.fingerprint is not None:
            found["fingerprint"] = self.fingerprint
        if self.factory:
            found["factory"] = self.factory
        return found


@dataclass(frozen=True)
class Provenance:
    """Where each value of a configuration came from.

    ``user_set``: settings the user gave (on the command line, in a sweep file, as
    keyword arguments) and that the run keeps; ``ignored``: settings the user gave that
    cannot change this run (a mask value without GMS, another method's setting), with
    why, dropped so that equal runs have equal configurations; ``best_args``: the row of
    best arguments used, described, and ``from_best_args`` the values taken from it;
    ``best_args_values``: what each tunable setting (lr, replay batch, the method's own)
    would have been had the user set none (what a report compares a run's arguments
    with, so that editing a row later relabels no stored run);
    ``from_benchmark``: the values of the benchmark's protocol. Anything else is a default.
    """

    origin: str = ""
    user_set: tuple[str, ...] = ()
    ignored: tuple[tuple[str, str], ...] = ()
    best_args: str = ""
    # each tunable setting's value had the user set none: the row's, else the default
    best_args_values: tuple[tuple[str, object], ...] = ()
    from_best_args: tuple[str, ...] = ()
    from_benchmark: tuple[str, ...] = ()
    overridable: tuple[str, ...] = ()  # settings a best-args row or the protocol would give

    def source_of(self, name: str) -> str:
        if name in self.user_set:
            return f"set ({self.origin})" if self.origin else "set"
        if name in self.from_best_args:
            return self.best_args
        if name in self.from_benchmark:
            return "benchmark protocol"
        return "default"

    def summary(self) -> str:
        """One line: the best-args row and the values the user put in its place
        (``result.json``'s ``hyperparameter_source``)."""
        overridden = [name for name in self.overridable if name in self.user_set]
        if not self.best_args:  # a user's benchmark, say: what was set, else the defaults
            return "set: " + ", ".join(overridden) if overridden else "defaults"
        return self.best_args + ("; overridden: " + ", ".join(overridden) if overridden else "")

    def to_dict(self) -> dict:
        return {"origin": self.origin, "set": list(self.user_set),
                "ignored": dict(self.ignored), "best_args": self.best_args,
                "best_args_values": dict(self.best_args_values),
                "from_best_args": list(self.from_best_args),
                "from_benchmark": list(self.from_benchmark)}


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run, resolved and validated.

    Make one with :func:`replaymask.config.resolve`. Two runs with equal configurations
    give the same numbers; ``provenance`` does not take part in equality or the hash.
    """

    model: str
    dataset: str
    buffer_size: int
    seed: int
    n_epochs: int
    batch_size: int
    minibatch_size: int  # replay batch size
    lr: float
    gms: bool = False
    gms_mask_value: float | str = -math.inf
    gms_on_buffer: bool = False
    class_order_seed: int | None = None
    n_tasks: int | None = None  # None: the benchmark's
    validation_fraction: float = 0.0  # > 0: accuracy on held-out training images
    device: str = "cpu"
    lr_milestones: tuple[int, ...] = ()  # epochs of each task where the lr drops x0.1
    precision: str = "fp32"  # "fp32" | "bf16" (autocast)
    channels_last: bool = False
    compile: bool = False  # torch.compile the backbone
    # a user's benchmark: its content fingerprint and the options it was built with
    benchmark_fingerprint: str | None = None
    dataset_options: MethodSettings = field(default_factory=MethodSettings)
    # the network, where it is not the benchmark's default: its name and fingerprint
    backbone: str | None = None
    backbone_fingerprint: str | None = None
    method_settings: MethodSettings = field(default_factory=MethodSettings)
    provenance: Provenance = field(default_factory=Provenance, compare=False)
    # a method's settings left out of to_dict at these values (see Setting.omit_default)
    omitted_defaults: tuple[tuple[str, object], ...] = field(default=(), compare=False,
                                                             repr=False)
    # what the run is on and with, described (their identity is in the fields above)
    benchmark: BenchmarkInfo | None = field(default=None, compare=False, repr=False)
    network: NetworkChoice = field(default_factory=NetworkChoice, compare=False, repr=False)

    def to_dict(self) -> dict:
        """The configuration as flat JSON-safe data: the form that is hashed, stored in the
        results database and in checkpoints. An infinite mask value is the string "-inf"
        (here only)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in (
            "method_settings", "provenance", "benchmark", "network", "dataset_options",
            "omitted_defaults")}
        if isinstance(self.gms_mask_value, float) and math.isinf(self.gms_mask_value):
            data["gms_mask_value"] = "-inf"
        for name, left_out in LEFT_OUT_WHEN.items():
            implied = {"precision": self.device == "cpu", "channels_last": self.device == "cpu",
                       "lr_milestones": not self.benchmark.protocol.lr_milestones}
            if data[name] in left_out and implied.get(name, True):
                del data[name]
        if data["n_tasks"] is None:
            del data["n_tasks"]  # the benchmark's own split: the form of earlier runs
        if "lr_milestones" in data:
            data["lr_milestones"] = list(data["lr_milestones"])
        for name in ("benchmark_fingerprint", "backbone", "backbone_fingerprint"):
            if data[name] is None:  # a built-in benchmark, its default network
                del data[name]
        if self.dataset_options:
            data["dataset_options"] = dict(self.dataset_options)
        own = {name: value for name, value in self.method_settings.items()
               if (name, value) not in self.omitted_defaults}
        return {**LEGACY_METHOD_KEYS, **data, **own}

    def identity(self) -> dict:
        """What makes two runs the same run: :meth:`to_dict` without a registered
        benchmark's options (its content fingerprint stands for what they built)."""
        data = self.to_dict()
        data.pop("dataset_options", None)
        return data

    @property
    def hash(self) -> str:
        """A stable identifier of the configuration: the results database's key."""
        text = json.dumps(self.identity(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def name(self) -> str:
        """A readable, filesystem-safe identifier of the run."""
        dataset = self.dataset if self.benchmark_fingerprint is None \
            else f"{self.dataset}-{self.benchmark_fingerprint[:8]}"
        parts = [self.model, dataset, f"buf{self.buffer_size}", f"seed{self.seed}"]
        described = self.to_dict()
        if self.backbone is not None:
            net = self.backbone.rpartition(".")[2]
            if self.backbone_fingerprint is not None:
                net += f"-{self.backbone_fingerprint[:8]}"
            parts.append(f"net-{net}")
        if "n_tasks" in described:
            parts.append(f"{self.n_tasks}tasks")
        if self.class_order_seed is not None:
            parts.append(f"order{self.class_order_seed}")
        if self.validation_fraction:
            parts.append(f"val{self.validation_fraction:g}")
        if self.gms:
            mask = described["gms_mask_value"]
            parts.append(f"gms{mask}" + ("-onbuf" if self.gms_on_buffer else ""))
        return "_".join(str(part) for part in parts)

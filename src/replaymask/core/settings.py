"""A run setting, declared once: its kind, bounds, help and default.

The command line's flags, the check of every value (typed on a command line, read from a
sweep file or passed from Python), the keys a sweep file may use and the hardened-input
tests are all derived from these declarations: the core settings in
:mod:`replaymask.config`, and each method's own in its file (``METHOD["settings"]``).
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import ConfigError, describe
from ..plugins import NAME

KINDS = ("int", "float", "bool", "choice", "mask_value", "device", "epochs", "benchmark",
         "backbone", "options", "fingerprint")
CUDA_DEVICE = re.compile(r"cuda(:(0|[1-9][0-9]{0,2}))?")  # torch's device index is 8 bits
MAX_CUDA_INDEX = 127
FINGERPRINT = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Setting:
    """One setting of a run.

    ``default`` None means the value is filled when the run is resolved (from the
    benchmark's protocol, the method's best arguments or the device), and that None is a
    value the user may give too (in a sweep file: "the default").
    """

    name: str
    kind: str
    help: str = ""
    default: object = None
    minimum: float | None = None
    maximum: float | None = None
    above_minimum: bool = False  # strictly greater than ``minimum``
    choices: tuple[str, ...] = ()
    command_line: bool = True  # False: a key of sweep files and stored configurations only
    # True for a method setting added after runs were stored: at its default it is left
    # out of the run's dictionary, so that their hashes stay valid
    omit_default: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"setting {self.name!r}: unknown kind {self.kind!r} "
                             f"(one of {', '.join(KINDS)})")
        if self.kind == "choice" and not self.choices:
            raise ValueError(f"setting {self.name!r}: a choice needs its choices")

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value):
        """``value`` checked and normalised (numbers as floats, -0.0 as 0.0, epochs as a
        tuple, a mask value's text parsed); a ConfigError naming the flag otherwise.

        Values of any type are checked (a sweep file can hold any YAML value), so no other
        exception escapes."""
        if value is None and self.default is None:
            return None
        return _CHECKS[self.kind](self, value)

    def command_line_type(self):
        """What argparse converts the typed word with (its error names the flag)."""
        return {"int": int, "float": float, "epochs": parse_epochs}.get(self.kind, str)


def _check_benchmark(setting: Setting, value):
    """A benchmark's name (whether it exists is checked when the run is resolved), or a
    Benchmark object (Python)."""
    if isinstance(value, str):
        _require(NAME.fullmatch(value) is not None,
                 f"{setting.flag} must be a benchmark's name, got {describe(value)}")
        return value
    from ..data.benchmarks import Benchmark

    _require(isinstance(value, Benchmark), f"{setting.flag} must be a benchmark's name or a "
                                           f"Benchmark, got {describe(value)}")
    return value


def _check_backbone(setting: Setting, value):
    """A network's name, or (Python) an nn.Module or a factory of one."""
    if isinstance(value, str):
        _require(NAME.fullmatch(value) is not None,
                 f"{setting.flag} must be a network's name, got {describe(value)}")
        return value
    _require(callable(value), f"{setting.flag} must be a network's name, an nn.Module or a "
                              f"factory f(num_classes) -> nn.Module, got {describe(value)}")
    return value


def _check_options(setting: Setting, value):
    """Keyword options: a mapping of names to plain data."""
    _require(isinstance(value, Mapping) and all(isinstance(k, str) for k in value),
             f"{setting.flag} must be a mapping of option names to values, got "
             f"{describe(value)}")
    return dict(value)


def _check_fingerprint(setting: Setting, value):
    _require(isinstance(value, str) and FINGERPRINT.fullmatch(value) is not None,
             f"{setting.flag} must be a SHA-256 fingerprint (64 hex digits), got "
             f"{describe(value)}")
    return value


def _check_int(setting: Setting, value):
    low, high = setting.minimum, setting.maximum
    ok = _is_int(value) and (low is None or value >= low) and (high is None or value <= high)
    bounds = [f">= {low}"] if low is not None else []
    bounds += [f"<= {high}"] if high is not None else []
    _require(ok, f"{setting.flag} must be an integer {' and '.join(bounds)}".rstrip()
             + f", got {describe(value)}")
    return value


def _check_float(setting: Setting, value):
    number = as_float(value)
    low, high = setting.minimum, setting.maximum
    ok = number is not None and math.isfinite(number) and (
        low is None or (number > low if setting.above_minimum else number >= low)) and (
        high is None or number <= high)
    bounds = [] if low is None else [f"{'>' if setting.above_minimum else '>='} {low:g}"]
    bounds += [] if high is None else [f"<= {high:g}"]
    bound = "".join(" " + b if i == 0 else " and " + b for i, b in enumerate(bounds))
    _require(ok, f"{setting.flag} must be a finite number{bound}, got {describe(value)}")
    return number + 0.0  # -0.0 becomes 0.0: equal settings, equal hashes


def _check_bool(setting: Setting, value):
    _require(isinstance(value, bool), f"{setting.flag} must be true or false, "
                                      f"got {describe(value)}")
    return value


def _check_choice(setting: Setting, value):
    _require(isinstance(value, str) and value in setting.choices,
             f"{setting.flag} must be one of {', '.join(setting.choices)}, got {describe(value)}")
    return value


def _check_mask_value(setting: Setting, value):
    """A number (not NaN or +inf; -inf is hard masking), or text: a number, "-inf" or
    "detach" (any case, surrounding spaces allowed), as typed or in a sweep file."""
    if isinstance(value, str):
        if value.strip().lower() == "detach":
            return "detach"
        try:
            value = float(value)
        except ValueError:
            value = None
    number = as_float(value)
    _require(number is not None and not math.isnan(number) and number != math.inf,
             f"{setting.flag} must be a number, -inf or 'detach' (not NaN or +inf), "
             f"got {describe(value)}")
    return number + 0.0


def _check_device(setting: Setting, value):
    ok = isinstance(value, str) and (value == "cpu" or (
        CUDA_DEVICE.fullmatch(value) is not None
        and int(value.partition(":")[2] or 0) <= MAX_CUDA_INDEX))
    _require(ok, f"{setting.flag} must be 'cpu' or 'cuda[:N]' (N from 0 to {MAX_CUDA_INDEX}), "
                 f"got {describe(value)}")
    return value


def _check_epochs(setting: Setting, value):
    ok = isinstance(value, (list, tuple)) and all(_is_int(v) and v >= 1 for v in value)
    _require(ok, f"{setting.flag} must be integers >= 1, got {describe(value)}")
    return tuple(value)


_CHECKS = {"int": _check_int, "float": _check_float, "bool": _check_bool,
           "choice": _check_choice, "mask_value": _check_mask_value, "device": _check_device,
           "epochs": _check_epochs, "benchmark": _check_benchmark, "backbone": _check_backbone,
           "options": _check_options, "fingerprint": _check_fingerprint}


def parse_epochs(text: str) -> tuple[int, ...]:
    """A command line's epochs: ``35,45``, or ``none`` for no epoch at all."""
    if text.strip().lower() == "none":
        return ()
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated epochs or 'none', got {text!r}") from None


def as_float(value) -> float | None:
    """``value`` as a float if it is a real number (not a bool); an integer too large for a
    float is +-inf; None otherwise."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)

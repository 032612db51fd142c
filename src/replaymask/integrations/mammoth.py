"""GMS inside Mammoth (aimagelab/mammoth): the arguments and the loss a Mammoth model needs.

A Mammoth model (a ``ContinualModel`` in Mammoth's ``models/`` folder) gets GMS in three
lines: its ``get_parser`` passes the parser through :func:`add_gms_args`, its
``__init__`` builds ``self.gms = GMSLoss(self)``, and its ``observe`` takes the
cross-entropy from ``self.gms`` instead of ``self.loss``. Ready-made ER and DER++ files
are in ``integrations/mammoth/models/`` of the replaymask repository.

The options follow Mammoth's conventions (underscores, booleans as ``0|1``)::

    --gms 1                  mask each stream sample's softmax to its own task's classes
    --gms_mask_value M       a number, -inf (default: hard masking) or detach
    --gms_on_buffer 1        also mask replayed samples to their own task's classes

With ``--gms 0`` (the default) every loss is the model's own ``self.loss``, so the model
trains exactly as the Mammoth model it extends. A bad value ends the program with one
line naming the option (Mammoth's parser would print its 70-line usage first).

This module imports nothing of Mammoth: it reads what every ``ContinualModel`` has
(``args``, ``loss``, ``cpt``, ``N_TASKS``, ``N_CLASSES``, ``SETTING``).
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ..core.gms import GMSRule, class_to_task_layout, gms_cross_entropy, same_task_table
from ..core.settings import Setting
from ..errors import ConfigError, describe

__all__ = ["GMSLoss", "GMSOptionError", "add_gms_args", "mammoth_class_to_task",
           "parse_mask_value", "parse_switch"]

DEFAULT_MASK_VALUE = "-inf"
TRUE_WORDS = ("1", "true", "t", "yes", "y")  # what Mammoth's own 0|1 options accept
FALSE_WORDS = ("0", "false", "f", "no", "n")
TASK_SETTINGS = ("class-il", "task-il")  # where every class belongs to one task


class GMSOptionError(SystemExit):
    """A bad GMS option or a model GMS cannot apply to.

    A ``SystemExit`` so that Mammoth's command line, which catches nothing, ends with this
    one line on stderr and exit status 1 instead of a usage text or a traceback."""

    def __init__(self, message: str):
        super().__init__(f"error: {message}")
        self.message = message


class _MammothSetting(Setting):
    """A replaymask setting whose messages name Mammoth's option (``--gms_mask_value``)."""

    @property
    def flag(self) -> str:
        return "--" + self.name


_MASK_VALUE = _MammothSetting("gms_mask_value", "mask_value", default=DEFAULT_MASK_VALUE)


def parse_mask_value(value) -> float | str:
    """A mask value as typed (``-inf``, ``0``, ``-5.5``, ``detach``) or given from Python:
    a float (never NaN or +inf) or ``"detach"``; :class:`GMSOptionError` otherwise."""
    try:
        return _MASK_VALUE.check(value)
    except ConfigError as error:
        raise GMSOptionError(str(error)) from None


def parse_switch(value, option: str = "--gms") -> bool:
    """A Mammoth boolean option: ``0|1|true|false|yes|no`` (any case), or a bool/0/1."""
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    word = value.strip().lower() if isinstance(value, str) else None
    if word in TRUE_WORDS or word in FALSE_WORDS:
        return word in TRUE_WORDS
    raise GMSOptionError(f"{option} must be 0 or 1 (or true/false), got {describe(value)}")


def add_gms_args(parser):
    """Add ``--gms``, ``--gms_mask_value`` and ``--gms_on_buffer`` to a model's parser (an
    ``argparse`` parser or argument group, as Mammoth passes to ``get_parser``); returns it.

    The defaults go through the same parsers (Mammoth re-parses every default), so ``args``
    holds ``gms: bool``, ``gms_mask_value: float | "detach"``, ``gms_on_buffer: bool``."""
    parser.add_argument("--gms", type=_switch_type("--gms"), default=0, metavar="0|1",
                        help="GMS (Kim, Kwon & Kim 2023): mask each stream sample's softmax "
                             "to the classes of its own task, with no gradient into the "
                             "others (default: 0, the plain cross-entropy)")
    parser.add_argument("--gms_mask_value", type=parse_mask_value, default=DEFAULT_MASK_VALUE,
                        metavar="M", help="the masked logits' value: a number, -inf (hard "
                                          "masking, default) or detach (their own value, "
                                          "no gradient); with --gms 1")
    parser.add_argument("--gms_on_buffer", type=_switch_type("--gms_on_buffer"), default=0,
                        metavar="0|1", help="also mask replayed samples to their own task's "
                                            "classes (default: 0, as the GMS authors); "
                                            "with --gms 1")
    return parser


def _switch_type(option: str):
    def switch(value) -> bool:
        return parse_switch(value, option)
    return switch


class GMSLoss:
    """The cross-entropies of a Mammoth model, GMS-masked as its ``args`` say.

    ``GMSLoss(model)`` reads ``model.args.gms`` / ``gms_mask_value`` / ``gms_on_buffer``
    (absent ones are off / ``-inf`` / off) and the class-to-task layout from the model's
    ``cpt`` (Mammoth's classes per task: an int or a list), ``N_TASKS`` and ``N_CLASSES``:
    task t holds the ``cpt`` classes after those of tasks ``0..t-1``, which is how Mammoth
    numbers them (it relabels permuted class orders to this layout). A sample's live
    classes are those of its label's task, so stream and buffer rows are masked alike.

    With GMS off, every method returns ``model.loss(logits, labels)`` itself.
    """

    def __init__(self, model: nn.Module):
        args = model.args
        self.model_loss = model.loss
        self.enabled = parse_switch(getattr(args, "gms", False), "--gms")
        self.mask_value = parse_mask_value(getattr(args, "gms_mask_value", DEFAULT_MASK_VALUE))
        self.on_buffer = parse_switch(getattr(args, "gms_on_buffer", False), "--gms_on_buffer")
        self.rule = GMSRule(self.enabled, self.mask_value, self.on_buffer)
        self.class_to_task: torch.Tensor | None = None  # filled with --gms 1
        self._live_by_class: dict[torch.device, torch.Tensor] = {}
        if self.enabled:
            _check_applies(model)
            self.class_to_task = mammoth_class_to_task(model)
        elif self.on_buffer or not _is_default_mask_value(self.mask_value):
            warnings.warn("--gms_mask_value and --gms_on_buffer have no effect without --gms 1",
                          stacklevel=2)

    def stream_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of stream rows: GMS-masked to their own task with ``--gms 1``."""
        return self._loss(logits, labels, replayed=False)

    def replay_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of buffer rows: masked only with ``--gms 1 --gms_on_buffer 1``."""
        return self._loss(logits, labels, replayed=True)

    def stream_and_replay_loss(self, logits: torch.Tensor, labels: torch.Tensor,
                               stream: int) -> torch.Tensor:
        """One mean cross-entropy over a stream batch (the first ``stream`` rows) followed by
        a replay batch, as ER takes it: each row masked as :meth:`stream_loss` or
        :meth:`replay_loss` would mask it."""
        return self._loss(logits, labels, replayed=stream)

    def live(self, labels: torch.Tensor) -> torch.Tensor:
        """``(N, N_CLASSES)`` bool: the classes of each label's task (with ``--gms 1``)."""
        return self._table(labels.device)[labels]

    def _table(self, device) -> torch.Tensor:
        table = self._live_by_class.get(device)
        if table is None:
            table = same_task_table(self.class_to_task.to(device))
            self._live_by_class[device] = table
        return table

    def _loss(self, logits, labels, replayed: bool | int) -> torch.Tensor:
        if not self.rule.masks(replayed=replayed is True):
            return self.model_loss(logits, labels)
        live = self.rule.live(labels, self._table(labels.device), replayed=replayed)
        return gms_cross_entropy(logits, labels, live, self.mask_value, check_targets=False)


def mammoth_class_to_task(model) -> torch.Tensor:
    """The task of each of a Mammoth model's classes, from its ``cpt``, ``N_TASKS`` and
    ``N_CLASSES`` (classes beyond the tasks' get -1: never live)."""
    per_task = model.cpt
    sizes = [per_task] * model.N_TASKS if isinstance(per_task, int) else list(per_task)
    tasks, start = [], 0
    for size in sizes:
        tasks.append(list(range(start, start + size)))
        start += size
    return class_to_task_layout(tasks, num_classes=model.N_CLASSES)


def _check_applies(model) -> None:
    name = getattr(model, "NAME", type(model).__name__)
    setting = getattr(model, "SETTING", None)
    if setting not in TASK_SETTINGS:
        raise GMSOptionError(f"{name}: --gms 1 needs a class-il or task-il dataset (each class "
                             f"in one task), got the setting {describe(setting)}")
    if not _is_plain_cross_entropy(model.loss):
        raise GMSOptionError(f"{name}: --gms 1 replaces a plain cross-entropy loss, but the "
                             f"dataset's loss is {describe(model.loss)}")


def _is_plain_cross_entropy(loss) -> bool:
    if loss is F.cross_entropy:
        return True
    return (type(loss) is nn.CrossEntropyLoss and loss.weight is None
            and loss.label_smoothing == 0 and loss.ignore_index == -100
            and loss.reduction == "mean")


def _is_default_mask_value(value) -> bool:
    return value == -math.inf

"""GMS inside Avalanche (avalanche-lib): a criterion that Avalanche strategies call as they
call any loss, and that, being a plugin too, learns the class layout from the experiences
the strategy trains on.

    from avalanche.training.plugins import ReplayPlugin
    from avalanche.training.supervised import Naive
    from replaymask.integrations.avalanche import GMSCriterion

    strategy = Naive(model=model, optimizer=optimizer, criterion=GMSCriterion(),
                     plugins=[ReplayPlugin(mem_size=200)], train_mb_size=10)
    for experience in benchmark.train_stream:
        strategy.train(experience)

A training minibatch may mix the current experience's samples with replayed ones (Avalanche's
ReplayPlugin concatenates a buffer minibatch to each stream minibatch). A row is a stream row
when its class belongs to the experience being trained: in a class-incremental stream the
buffer only holds earlier experiences' classes, so the class tells the two apart exactly. (A
buffer updated within an experience, as in online streams, may hold samples of the current
classes; those count as stream rows.)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from replaymask.core.gms import GMSRule, MaskValue, gms_cross_entropy
from replaymask.core.settings import as_float
from replaymask.errors import ConfigError, describe

try:
    from avalanche.training.plugins import SupervisedPlugin
    from avalanche.training.supervised import DER, ER_ACE, ER_AML, JointTraining
except ModuleNotFoundError as missing:
    if (missing.name or "").partition(".")[0] != "avalanche":
        raise
    raise ModuleNotFoundError("replaymask.integrations.avalanche needs avalanche-lib: "
                              "pip install 'replaymask[avalanche]'", name="avalanche") from None
except RuntimeError as broken:  # e.g. a CUDA torchvision beside a CPU torch
    raise ImportError(f"avalanche-lib is installed but does not import ({broken}); install the "
                      "torchvision build that matches your torch") from None

__all__ = ["GMSCriterion", "StrategyIgnoresCriterion"]


class StrategyIgnoresCriterion(RuntimeError):
    """The strategy computes its training loss without calling its criterion, so GMS would
    silently not be applied."""


class GMSCriterion(SupervisedPlugin):
    """The GMS cross-entropy as an Avalanche criterion (``criterion=GMSCriterion()``).

    In training, each row whose class belongs to the experience being trained (a stream
    row) is GMS-masked to that experience's classes: the logits of every other class are
    replaced by ``mask_value`` and receive no gradient
    (:func:`replaymask.core.gms.gms_cross_entropy`). Replayed rows (classes of earlier
    experiences) see plain cross-entropy over all logits, or, with ``gms_on_buffer=True``,
    are masked to their own experience's classes. The loss is the mean over all rows. In
    evaluation the loss is plain cross-entropy.

    The classes of each experience are read from the experience itself
    (``classes_in_this_experience``, or its dataset's targets) when training on it starts;
    ``class_layout`` lists what was learned. Each experience must bring only new classes,
    or exactly the classes of one earlier experience (training on it again).

    Strategies that compute their training loss without calling the criterion (in
    avalanche-lib 0.6: ``ER_ACE``, ``ER_AML`` and ``DER`` once their buffer is filled)
    raise :class:`StrategyIgnoresCriterion` when training starts; any other strategy that
    does so raises it at the first such step, before its backward pass. ``JointTraining``
    (every experience at once) is refused with a ``ValueError``.

    Args:
        mask_value: the value of the masked logits: ``-inf`` (hard masking, the default),
            a finite number, or ``"detach"`` (masked logits keep their value but pass no
            gradient).
        gms_on_buffer: also mask replayed rows to their own experience's classes.
    """

    def __init__(self, mask_value: MaskValue = float("-inf"), gms_on_buffer: bool = False):
        super().__init__()
        self.mask_value = _checked_mask_value(mask_value)
        if not isinstance(gms_on_buffer, bool):
            raise ConfigError(f"GMSCriterion: gms_on_buffer must be True or False, "
                              f"got {describe(gms_on_buffer)}")
        self.gms_on_buffer = gms_on_buffer
        self.rule = GMSRule(True, self.mask_value, gms_on_buffer)
        self.class_layout: list[list[int]] = []  # the classes of each task, in training order
        self._task_of_class: dict[int, int] = {}
        self._current_task: int | None = None
        self._evaluating = False
        self._called_since_forward = False
        self._tables: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self._evaluating or not torch.is_grad_enabled():
            return F.cross_entropy(logits, targets)
        if self._current_task is None:
            raise StrategyIgnoresCriterion(
                "GMSCriterion was called for training before any experience started: pass it "
                "as criterion= to an Avalanche strategy, which attaches it as a plugin")
        self._called_since_forward = True
        task_of_class, same_task = self._layout_tensors(logits.shape[1], logits.device)
        in_range = (targets >= 0) & (targets < logits.shape[1])
        task = task_of_class[targets.clamp(0, logits.shape[1] - 1)]
        if not bool((in_range & (task >= 0)).all()):
            unknown = targets[~(in_range & (task >= 0))][0].item()
            raise ValueError(f"GMSCriterion: class {unknown} is in no experience trained so "
                             f"far (the model has {logits.shape[1]} outputs)")
        # rows of other experiences are replayed ones: the rule keeps them plain by default
        live = self.rule.live(targets, same_task, replayed=task != self._current_task)
        return gms_cross_entropy(logits, targets, live, self.mask_value, check_targets=False)

    # Plugin hooks: Avalanche calls them with the strategy as it trains and evaluates.

    def before_training(self, strategy, *args, **kwargs):
        if isinstance(strategy, (ER_ACE, ER_AML, DER)):
            raise StrategyIgnoresCriterion(
                f"GMSCriterion: {type(strategy).__name__} computes its replay loss without its "
                "criterion, so it would train without GMS; use a strategy that calls it, such "
                "as Naive with ReplayPlugin")
        if isinstance(strategy, JointTraining):
            raise ValueError(
                "GMSCriterion: JointTraining trains on every experience at once, and GMS masks "
                "each row to the experience being trained; use CrossEntropyLoss for it")

    def before_training_exp(self, strategy, *args, **kwargs):
        experience = strategy.experience
        self._current_task = self._learn(_classes_of(experience), _name_of(experience))

    def after_forward(self, strategy, *args, **kwargs):
        self._called_since_forward = False

    def before_backward(self, strategy, *args, **kwargs):
        if not self._called_since_forward:
            raise StrategyIgnoresCriterion(
                f"GMSCriterion: {type(strategy).__name__} computed a training loss without "
                f"calling its criterion ({_name_of(strategy.experience)}), so it would train "
                "without GMS; use a strategy that calls it, such as Naive with ReplayPlugin")

    def before_eval(self, strategy, *args, **kwargs):
        self._evaluating = True

    def after_eval(self, strategy, *args, **kwargs):
        self._evaluating = False

    def _learn(self, classes: list[int], name: str) -> int:
        tasks = {self._task_of_class.get(c) for c in classes}
        if tasks == {None}:
            self.class_layout.append(classes)
            self._task_of_class.update(dict.fromkeys(classes, len(self.class_layout) - 1))
            self._tables.clear()
            return len(self.class_layout) - 1
        if len(tasks) == 1:  # the classes of one earlier experience, trained on again
            return tasks.pop()
        raise ValueError(
            f"GMSCriterion: {name} has classes {classes}, which mix "
            + ("new classes with earlier ones" if None in tasks else "several earlier tasks")
            + f" (tasks so far: {self.class_layout}); GMS needs class-incremental "
            "experiences, each bringing new classes")

    def _layout_tensors(self, num_outputs: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(task of each class, -1 if none; (K, K) same-known-task table), cached."""
        key = (num_outputs, str(device))
        if key not in self._tables:
            task_of_class = torch.full((num_outputs,), -1, dtype=torch.long)
            for c, task in self._task_of_class.items():
                if c < num_outputs:
                    task_of_class[c] = task
            known = task_of_class >= 0
            same_task = ((task_of_class.unsqueeze(0) == task_of_class.unsqueeze(1))
                         & known.unsqueeze(0) & known.unsqueeze(1))
            self._tables[key] = (task_of_class.to(device), same_task.to(device))
        return self._tables[key]


def _checked_mask_value(value) -> MaskValue:
    if isinstance(value, str) and value == "detach":
        return value
    number = as_float(value)
    if number is None or math.isnan(number) or number == math.inf:
        raise ConfigError(f"GMSCriterion: mask_value must be a number, -inf or 'detach' "
                          f"(not NaN or +inf), got {describe(value)}")
    return number


def _classes_of(experience) -> list[int]:
    """The classes an experience brings: its own list, or its data's (an online
    sub-experience: those of the experience it was cut from)."""
    origin = getattr(experience, "origin_experience", None) or experience
    classes = getattr(origin, "classes_in_this_experience", None)
    if classes is None:
        targets = getattr(getattr(origin, "dataset", None), "targets", None)
        classes = getattr(targets, "uniques", None)
    if classes is None:
        raise ValueError(f"GMSCriterion: {_name_of(experience)} tells neither its classes "
                         "(classes_in_this_experience) nor its data's targets")
    return sorted(int(c) for c in classes)


def _name_of(experience) -> str:
    index = getattr(experience, "current_experience", None)
    return "an experience" if index is None else f"experience {index}"

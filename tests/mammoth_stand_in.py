"""A small stand-in for Mammoth, so that CI can test the GMS helper and the model files
without it: a ``ContinualModel`` with the attributes the helper reads, a buffer, and
``Er`` / ``Derpp`` with the plain losses, importable as ``models.er``, ``models.derpp`` and
``utils.buffer`` (the modules the copied model files import)."""

from __future__ import annotations

import argparse
import sys
import types
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

SEQ_MNIST_LIKE = SimpleNamespace(SETTING="class-il", N_CLASSES_PER_TASK=2, N_TASKS=5,
                                 N_CLASSES=10)
FEATURES = 8


class ContinualModel(nn.Module):
    """What a Mammoth model has when its ``observe`` runs (``models/utils/continual_model.py``
    at e75a491): ``net``, ``loss``, ``args``, ``transform``, ``opt``, ``device``,
    ``N_CLASSES``, ``N_TASKS``, ``SETTING``, ``cpt`` and ``current_task``."""

    NAME = "stand_in"
    COMPATIBILITY = ["class-il", "task-il"]

    def __init__(self, backbone, loss, args, transform, dataset=None):
        super().__init__()
        self.net, self.loss, self.args, self.transform = backbone, loss, args, transform
        self.dataset = dataset
        self.N_CLASSES = dataset.N_CLASSES
        self.N_TASKS = dataset.N_TASKS
        self.SETTING = dataset.SETTING
        self.cpt = dataset.N_CLASSES_PER_TASK
        self.current_task = 0
        self.opt = torch.optim.SGD(self.net.parameters(), lr=args.lr)
        self.device = torch.device("cpu")

    def observe(self, inputs, labels, not_aug_inputs, epoch=None):
        raise NotImplementedError


class Buffer:
    """Keeps the first ``buffer_size`` samples; draws replay batches with its own seeded
    generator, so that two models given the same data draw the same replay batches."""

    def __init__(self, buffer_size: int):
        self.buffer_size = buffer_size
        self.stored: dict[str, torch.Tensor] = {}
        self.generator = torch.Generator().manual_seed(0)

    def is_empty(self) -> bool:
        return not self.stored

    def add_data(self, examples, labels, logits=None):
        given = {"examples": examples, "labels": labels, "logits": logits}
        for name, value in given.items():
            if value is not None:
                kept = torch.cat([self.stored[name], value]) if name in self.stored else value
                self.stored[name] = kept[:self.buffer_size].detach().clone()

    def get_data(self, size, transform=None, device=None):
        count = len(self.stored["labels"])
        chosen = torch.randperm(count, generator=self.generator)[:min(size, count)]
        return tuple(self.stored[name][chosen] for name in ("examples", "labels", "logits")
                     if name in self.stored)


def add_rehearsal_args(parser):
    parser.add_argument("--buffer_size", type=int, required=True)
    parser.add_argument("--minibatch_size", type=int)


class Er(ContinualModel):
    """ER with the plain loss: one cross-entropy over the stream and a replay batch."""

    NAME = "er"

    @staticmethod
    def get_parser(parser):
        add_rehearsal_args(parser)
        return parser

    def __init__(self, backbone, loss, args, transform, dataset=None):
        super().__init__(backbone, loss, args, transform, dataset=dataset)
        self.buffer = Buffer(args.buffer_size)

    def observe(self, inputs, labels, not_aug_inputs, epoch=None):
        stream = len(inputs)
        self.opt.zero_grad()
        if not self.buffer.is_empty():
            replay_inputs, replay_labels = self.buffer.get_data(self.args.minibatch_size)
            inputs, labels = torch.cat((inputs, replay_inputs)), torch.cat((labels, replay_labels))
        loss = self.loss(self.net(inputs), labels)
        loss.backward()
        self.opt.step()
        self.buffer.add_data(examples=not_aug_inputs, labels=labels[:stream])
        return loss.item()


class Derpp(ContinualModel):
    """DER++ with the plain losses: CE on the stream, alpha * MSE to stored logits, beta * CE
    on a second replay draw."""

    NAME = "derpp"

    @staticmethod
    def get_parser(parser):
        add_rehearsal_args(parser)
        parser.add_argument("--alpha", type=float, required=True)
        parser.add_argument("--beta", type=float, required=True)
        return parser

    def __init__(self, backbone, loss, args, transform, dataset=None):
        super().__init__(backbone, loss, args, transform, dataset=dataset)
        self.buffer = Buffer(args.buffer_size)

    def observe(self, inputs, labels, not_aug_inputs, epoch=None):
        self.opt.zero_grad()
        outputs = self.net(inputs)
        loss = self.loss(outputs, labels)
        if not self.buffer.is_empty():
            replay_inputs, _, replay_logits = self.buffer.get_data(self.args.minibatch_size)
            loss = loss + self.args.alpha * F.mse_loss(self.net(replay_inputs), replay_logits)
            replay_inputs, replay_labels, _ = self.buffer.get_data(self.args.minibatch_size)
            loss = loss + self.args.beta * self.loss(self.net(replay_inputs), replay_labels)
        loss.backward()
        self.opt.step()
        self.buffer.add_data(examples=not_aug_inputs, labels=labels, logits=outputs.data)
        return loss.item()


def install_as_mammoth(monkeypatch) -> None:
    """Make ``models.er``, ``models.derpp`` and ``utils.buffer`` importable (for one test)."""
    modules = {"models": {}, "models.er": {"Er": Er}, "models.derpp": {"Derpp": Derpp},
               "models.utils": {}, "models.utils.continual_model":
                   {"ContinualModel": ContinualModel},
               "utils": {}, "utils.buffer": {"Buffer": Buffer}}
    for name, contents in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(contents)
        monkeypatch.setitem(sys.modules, name, module)


def parse_model_args(model_class, argv: list[str]) -> argparse.Namespace:
    """A model's arguments parsed as Mammoth does: its ``get_parser`` given an argument group
    of the main parser, then every default passed through its type once more."""
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--lr", type=float, required=True)
    model_class.get_parser(parser.add_argument_group("Model-specific arguments"))
    for action in parser._actions:
        if action.default is not None and action.type is not None:
            action.default = action.type(action.default)
    return parser.parse_args(argv)


def build(model_class, argv: list[str], seed: int = 0, dataset=SEQ_MNIST_LIKE,
          loss=F.cross_entropy):
    """A model with a seeded linear backbone (FEATURES inputs -> N_CLASSES logits)."""
    torch.manual_seed(seed)
    backbone = nn.Linear(FEATURES, dataset.N_CLASSES)
    return model_class(backbone, loss, parse_model_args(model_class, argv), None,
                       dataset=dataset)


def task_batch(task: int, size: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random inputs labelled with the two classes of ``task``."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(size, FEATURES, generator=generator)
    labels = 2 * task + torch.randint(0, 2, (size,), generator=generator)
    return inputs, labels

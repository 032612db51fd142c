"""GDumb, Greedy sampler and Dumb learner (Prabhu, Torr & Dokania, ECCV 2020).

The stream only fills the memory, greedily class-balanced
(:class:`~replaymask.core.buffer.ClassBalancedBuffer`); no step trains on it. At the end
of each task a network is trained from scratch (re-initialised) on the memory alone:
``--fitting-epochs`` epochs of SGD (momentum 0.9, weight decay 1e-6) in batches of the
stream's size, the learning rate ``--maxlr`` / 10 for the first epoch, then cosine
annealing with warm restarts (first period one epoch, doubling) between ``--maxlr``
and ``--minlr``, and CutMix on image inputs ((B, H, W) or (B, C, H, W); not on flat
vectors) with probability 0.5 (``--cutmix-alpha`` > 0; 0 turns it off: the authors' MNIST
runs have none, and S-MNIST's row says so; their CIFAR runs have it). Every row of the
accuracy matrix is so a GDumb model; Mammoth trains only after the last task, so only its
last row compares (the final accuracy); ``--fit-after last_task`` does the same (one fit
instead of one per task).

Differences from Mammoth's ``gdumb``: Mammoth's memory is a reservoir, not the
greedy class-balanced sampler of the paper; and its optimiser has no momentum or weight
decay unless asked (``--optim_mom``, ``--optim_wd``), where the paper's has both.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..buffer import ClassBalancedBuffer
from .base import ContinualMethod
from .joint import reinitialise

METHOD = {
    "name": "gdumb",
    "label": "GDumb",
    "class": "GDumb",
    "order": 82,
    "buffer": True,
    "gms": ("none",
            "GDumb has no stream loss: it trains a fresh network on its memory alone, "
            "with every class in one softmax"),
    "settings": {
        "maxlr": {"kind": "float", "minimum": 0, "above_minimum": True, "default": 0.05,
                  "help": "GDumb's largest learning rate (cosine annealing)"},
        "minlr": {"kind": "float", "minimum": 0, "default": 0.0005,
                  "help": "GDumb's smallest learning rate (cosine annealing)"},
        "fitting_epochs": {"kind": "int", "minimum": 1, "maximum": 100000, "default": 256,
                           "help": "epochs GDumb trains on its memory after each task"},
        "cutmix_alpha": {"kind": "float", "minimum": 0, "default": 1.0,
                         "help": "CutMix's Beta(alpha, alpha) for GDumb (0: no CutMix)"},
        "fit_after": {"kind": "choice", "choices": ["each_task", "last_task"],
                      "default": "each_task", "omit_default": True,
                      "help": "when GDumb fits its network: after each task (every row of "
                              "the accuracy matrix a GDumb model), or after the last only "
                              "(Mammoth's; the earlier rows are the untrained network's)"},
    },
    # the stream steps do not train (the learning rate is unused); the paper's fit, and no
    # CutMix on MNIST (the authors' replicate.sh runs MNIST with --regularization none)
    "best_args": {"seq-mnist": ("GDumb paper", {None: {"lr": 0.05, "cutmix_alpha": 0.0}})},
    "best_args_fallback": "seq-mnist",
}

MOMENTUM, WEIGHT_DECAY = 0.9, 1e-6


class GDumb(ContinualMethod):
    def create_buffer(self):
        return ClassBalancedBuffer(self.config.buffer_size, device=self.device,
                                   seed=self.config.seed + 1, task_of_class=self.class_to_task)

    def observe(self, raw_inputs, labels):
        self.remember(raw_inputs, labels)
        return torch.zeros((), device=labels.device)

    def end_task(self, task, data):
        if self.settings.fit_after == "last_task" and task < self.layout.n_tasks - 1:
            return
        reinitialise(self.net)
        if self.buffer.is_empty():
            return
        settings = self.settings
        count = len(self.buffer)
        examples, labels = self.buffer.examples[:count], self.buffer.labels[:count]
        params = [p for p in self.net.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(params, lr=settings.maxlr, momentum=MOMENTUM,
                                    weight_decay=WEIGHT_DECAY)
        draws = np.random.default_rng(self.config.seed + 3)  # CutMix's
        for epoch in range(settings.fitting_epochs):
            for group in optimizer.param_groups:
                group["lr"] = fitting_rate(epoch, settings.maxlr, settings.minlr)
            order = torch.randperm(count, device=labels.device)
            for batch in order.split(self.config.batch_size):
                inputs, targets = self.prepare(examples[batch]), labels[batch]
                mixed = cutmix(inputs, targets, settings.cutmix_alpha, draws)
                optimizer.zero_grad()
                if mixed is None:
                    loss = F.cross_entropy(self.net(inputs), targets)
                else:
                    inputs, other, share = mixed
                    logits = self.net(inputs)
                    loss = share * F.cross_entropy(logits, targets) + \
                        (1 - share) * F.cross_entropy(logits, other)
                loss.backward()
                optimizer.step()


def fitting_rate(epoch: int, maxlr: float, minlr: float) -> float:
    """GDumb's schedule: maxlr / 10 for the warm-up epoch, then cosine annealing with warm
    restarts (periods 1, 2, 4, ... epochs, counted from the second epoch)."""
    if epoch == 0:
        return maxlr * 0.1
    since = epoch - 1  # epochs since annealing began: restart r spans [2^r - 1, 2^(r+1) - 1)
    restart = int(math.log2(since + 1))
    period = 2 ** restart
    position = since - (period - 1)
    return minlr + (maxlr - minlr) * (1 + math.cos(math.pi * position / period)) / 2


def cutmix(inputs, targets, alpha, draws):
    """CutMix (Yun et al., ICCV 2019) on a batch of images with probability 0.5: a box of
    each image replaced by the same box of another image of the batch. Returns the mixed
    images, the other images' labels and the share of the original image left, or None
    (not applied, or the inputs are not images: (B, H, W) or (B, C, H, W))."""
    if alpha <= 0 or inputs.dim() not in (3, 4) or draws.random() > 0.5:
        return None
    share = draws.beta(alpha, alpha)
    height, width = inputs.shape[-2:]
    cut = math.sqrt(1 - share)
    box_h, box_w = int(height * cut), int(width * cut)
    centre_y, centre_x = draws.integers(height), draws.integers(width)
    top, bottom = np.clip([centre_y - box_h // 2, centre_y + box_h // 2], 0, height)
    left, right = np.clip([centre_x - box_w // 2, centre_x + box_w // 2], 0, width)
    partner = torch.from_numpy(draws.permutation(len(inputs))).to(inputs.device)
    mixed = inputs.clone()
    mixed[..., top:bottom, left:right] = inputs[partner][..., top:bottom, left:right]
    kept = 1 - (bottom - top) * (right - left) / (height * width)
    return mixed, targets[partner], float(kept)

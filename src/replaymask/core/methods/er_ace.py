"""ER with Asymmetric Cross-Entropy (Caccia et al. 2022).

From the second task on, the stream cross-entropy ignores the seen classes that are
absent from the batch (their logits are filled with a large negative value; classes
not seen yet stay in), and a plain cross-entropy on a replay batch is added. With
``--gms`` the stream term is the GMS loss instead, which masks every class outside
the sample's task with the chosen value; the replay term is unchanged.
"""

import torch
import torch.nn.functional as F

from .base import ContinualMethod

METHOD = {
    "name": "er_ace",
    "label": "ER-ACE",
    "class": "ERACE",
    "order": 60,
    "buffer": True,
    "gms": ("built-in",
            "ACE masks the seen classes absent from the batch out of the stream "
            "cross-entropy; with --gms the stream rows are masked to their own task at m instead"),
    # Mammoth's defaults (no tuned arguments for these benchmarks); the replay batch is
    # the stream batch's size
    "best_args": {
        "seq-mnist": ("Mammoth defaults", {None: {"lr": 0.03}}),
        "seq-cifar10": ("Mammoth defaults", {None: {"lr": 0.03}}),
        "seq-tinyimg": ("Mammoth defaults", {None: {"lr": 0.03}}),
        "seq-cifar100": ("Mammoth", {500: {"lr": 0.03, "minibatch_size": 32},
                                     2000: {"lr": 0.03, "minibatch_size": 32}}),
    },
}


class ERACE(ContinualMethod):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        num_classes = len(self.class_to_task)
        self.class_index = torch.arange(num_classes, device=self.buffer.device)
        self.highest_seen = torch.zeros((), dtype=torch.long, device=self.buffer.device)

    def state_dict(self):
        return {**super().state_dict(), "highest_seen": self.highest_seen}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.highest_seen = state["highest_seen"].to(self.buffer.device)

    def observe(self, raw_inputs, labels):
        logits = self.net(self.prepare(raw_inputs))
        self.highest_seen = torch.maximum(self.highest_seen, labels.max())
        if self.gms_rule.masks(replayed=False):
            loss = self.stream_loss(logits, labels)
        elif self.task > 0:
            present = torch.zeros_like(self.class_index, dtype=torch.bool)
            present[labels] = True
            live = present | (self.class_index >= self.highest_seen)
            loss = F.cross_entropy(torch.where(live, logits, torch.finfo(logits.dtype).min),
                                   labels)
        else:
            loss = F.cross_entropy(logits, labels)
        if self.task > 0 and not self.buffer.is_empty():
            replay = self.buffer.sample(self.config.minibatch_size)
            loss = loss + self.replay_loss(self.net(self.prepare(replay.examples)), replay.labels)
        self.update(loss)
        self.remember(raw_inputs, labels)
        return loss.detach()

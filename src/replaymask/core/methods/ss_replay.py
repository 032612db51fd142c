"""Separated-softmax replay: the cross-entropy of SS-IL (Ahn et al., ICCV 2021) without its
distillation term, on a reservoir buffer.

Each row of the batch (the stream batch, then a replay batch) gets a softmax over one
part of the classes: rows of the current task t over task t's classes, rows of earlier
tasks over the classes of tasks 0..t-1. Their cross-entropies are averaged over all
rows, as in the authors' code. The buffer is ER's (reservoir sampling over the stream,
replay from the first step), so a replayed row of the current task counts as new.

How it relates to GMS: the stream term *is* GMS with hard masking (m = -inf, live = the
sample's own task); the replay term differs from GMS's unmasked replay by hiding the
current and future classes from old samples. With ``--gms``, the -inf of both
separations becomes the mask value m (a finite m, or ``detach``: the general form on
SS-IL's partition), so ``--gms`` with the default m = -inf is the same run as without
it. ``--gms --gms-on-buffer`` separates each replayed row by its own task instead.
"""

import torch

from .base import ContinualMethod

METHOD = {
    "name": "ss_replay",
    "label": "SS replay",
    "class": "SeparatedSoftmaxReplay",
    "order": 65,
    "buffer": True,
    "gms": ("built-in",
            "the -inf of both separated softmaxes becomes m"),
    # none published for these benchmarks: ER's, whose step it shares (one stream batch,
    # one replay batch, one update)
    "best_args_of": "er",
}


class SeparatedSoftmaxReplay(ContinualMethod):
    def observe(self, raw_inputs, labels):
        inputs, targets, stream = self.prepare(raw_inputs), labels, len(labels)
        if not self.buffer.is_empty():
            replay = self.buffer.sample(self.config.minibatch_size)
            inputs = torch.cat([inputs, self.prepare(replay.examples)])
            targets = torch.cat([labels, replay.labels])
        # without --gms the run's mask value is -inf: SS-IL's separated softmax
        loss = self.gms_cross_entropy(self.net(inputs), targets, self.separated(targets, stream))
        self.update(loss)
        self.remember(raw_inputs, labels)
        return loss.detach()

    def separated(self, targets: torch.Tensor, stream: int) -> torch.Tensor:
        """(N, K) bool: each row's part of the classes (its softmax's live classes)."""
        task_of_class = self.class_to_task.unsqueeze(0)
        new = (task_of_class == self.task) & (self.class_to_task[targets] == self.task)[:, None]
        old = (task_of_class < self.task) & (self.class_to_task[targets] < self.task)[:, None]
        live = new | old
        if self.gms_rule.masks(replayed=True):  # replayed rows to their own task instead
            live[stream:] = self.live_by_class[targets[stream:]]
        return live

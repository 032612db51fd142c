"""Experience Replay (Chaudhry et al. 2019).

The replay batch is appended to the stream batch and one cross-entropy is averaged
over both, as in Mammoth; with ``--gms`` the stream rows are GMS-masked.

``--replay-classes earlier`` is an ablation (docs/study/plan.md section 7): a replayed
row of an earlier task gets a softmax over the classes of the earlier tasks only, so the
replay term never weighs old classes against the current task's; a replayed row of the
current task is treated as a stream row.
"""

import torch
import torch.nn.functional as F

from .base import ContinualMethod

METHOD = {
    "name": "er",
    "label": "ER",
    "class": "ER",
    "order": 30,
    "buffer": True,
    "gms": ("rows",
            "one cross-entropy over the stream batch and a replay batch: stream rows masked, "
            "replayed rows only with --gms-on-buffer"),
    "settings": {
        "replay_classes": {"kind": "choice", "choices": ["all", "earlier"], "default": "all",
                           "omit_default": True,
                           "help": "the classes a replayed row of an earlier task is "
                                   "scored over: all (ER), or the earlier tasks' only (an "
                                   "ablation)"},
    },
    # the DER paper's best arguments (Buzzega et al. 2020, appendix), and Mammoth's for
    # Seq-CIFAR-100
    "best_args": {
        "seq-mnist": ("DER paper", {200: {"lr": 0.01, "minibatch_size": 10},
                                    500: {"lr": 0.1, "minibatch_size": 10},
                                    5120: {"lr": 0.1, "minibatch_size": 10}}),
        "seq-cifar10": ("DER paper", {200: {"lr": 0.1, "minibatch_size": 32},
                                      500: {"lr": 0.1, "minibatch_size": 32},
                                      5120: {"lr": 0.1, "minibatch_size": 32}}),
        "seq-tinyimg": ("DER paper", {200: {"lr": 0.1, "minibatch_size": 32},
                                      500: {"lr": 0.03, "minibatch_size": 32},
                                      5120: {"lr": 0.1, "minibatch_size": 32}}),
        "seq-cifar100": ("Mammoth", {500: {"lr": 0.1, "minibatch_size": 32},
                                     2000: {"lr": 0.1, "minibatch_size": 32}}),
    },
}


class ER(ContinualMethod):
    def observe(self, raw_inputs, labels):
        if self.buffer.is_empty():
            loss = self.stream_loss(self.net(self.prepare(raw_inputs)), labels)
        else:
            replay = self.buffer.sample(self.config.minibatch_size)
            inputs = torch.cat([self.prepare(raw_inputs), self.prepare(replay.examples)])
            logits, targets = self.net(inputs), torch.cat([labels, replay.labels])
            if self.settings.replay_classes == "all":
                loss = self.stream_and_replay_loss(logits, targets, stream=len(labels))
            else:
                loss = self._earlier_classes_loss(logits, targets, stream=len(labels))
        self.update(loss)
        self.remember(raw_inputs, labels)
        return loss.detach()

    def _earlier_classes_loss(self, logits, targets, stream: int):
        """The mean cross-entropy over all rows, a replayed row of an earlier task scored
        over the earlier tasks' classes (hard-masked), every other row as a stream row."""
        task_of = self.class_to_task
        earlier = task_of[targets] < self.task
        earlier[:stream] = False
        as_stream = self.stream_loss(logits[~earlier], targets[~earlier], reduction="sum")
        old = (task_of < self.task).unsqueeze(0)
        replayed = F.cross_entropy(logits[earlier].masked_fill(~old, float("-inf")),
                                   targets[earlier], reduction="sum")
        return (as_stream + replayed) / len(targets)

"""iCaRL, incremental Classifier and Representation Learning (Rebuffi et al., CVPR 2017).

Training: the task's data and the memory together (its ``training_data``),
shuffled; a binary cross-entropy per class on the sigmoid of each logit, the targets
being one-hot for the current and future classes and, for the earlier classes, the
sigmoid outputs of the network as it was at the end of the previous task
(distillation); plus ``--opt-wd`` times the squared norm of the weights. The memory:
after each task, ``buffer_size // classes`` items per seen class, the new ones chosen by
herding on the network's normalised features. Prediction: nearest class mean, the means
being those of the memory's normalised features, recomputed after each change; where the
benchmark's training augmentation mirrors images (CIFAR, TinyImageNet), averaged with
those of the mirrored images, as the authors' CIFAR code does. Not on MNIST: a mirrored
digit is another shape, and the paper's class mean is the plain mean. (Mammoth mirrors
MNIST's memory too, which costs its S-MNIST iCaRL about 9 points of Class-IL accuracy:
docs/vs-mammoth-methods.md.)

The network must expose ``features(x)``, the input of its classifier (the built-in MLP
and ResNet-18 do). Mammoth's ``icarl`` is the reference; where a class has no mean yet
(evaluations before its task ends) its score is -inf.
"""

import copy

import torch
import torch.nn.functional as F

from ..buffer import herding, rebalance_by_class
from .base import ContinualMethod, TaskData

METHOD = {
    "name": "icarl",
    "label": "iCaRL",
    "class": "ICaRL",
    "order": 83,
    "buffer": True,
    "gms": ("none",
            "iCaRL's loss is a sigmoid per class (binary cross-entropy with distillation "
            "targets), not a softmax: there is no softmax for GMS to mask"),
    "settings": {
        "opt_wd": {"kind": "float", "minimum": 0, "default": 1e-5,
                   "help": "iCaRL's weight decay (times the squared norm of the weights)"},
    },
    # the DER paper's arguments for S-MNIST (Buzzega et al. 2020; Mammoth's utils/best_args.py,
    # unchanged from its first commit 7ab9db9 to e75a491)
    "best_args": {"seq-mnist": ("DER paper", {
        200: {"lr": 0.1, "minibatch_size": 10, "opt_wd": 0.0},
        500: {"lr": 0.1, "minibatch_size": 10, "opt_wd": 0.0},
        5120: {"lr": 0.1, "minibatch_size": 10, "opt_wd": 0.0}})},
    "best_args_fallback": "seq-mnist",
}


class ICaRL(ContinualMethod):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.require_features()
        self.old_net = None
        self.class_means = None
        self.identity = torch.eye(self.layout.num_classes, device=self.device)

    def training_data(self, task, data):
        count = len(self.buffer)
        if count == 0:
            return data
        return TaskData(torch.cat([data.inputs, self.buffer.examples[:count]]),
                        torch.cat([data.labels, self.buffer.labels[:count]]))

    def observe(self, raw_inputs, labels):
        self.class_means = None
        inputs = self.prepare(raw_inputs)
        logits = self.net(inputs)
        targets = self.identity[labels]
        if self.old_net is not None:
            past = self.layout.task_offsets[self.task]
            with torch.no_grad():
                targets[:, :past] = torch.sigmoid(self.old_net(inputs)[:, :past])
        loss = F.binary_cross_entropy_with_logits(logits, targets)
        if self.settings.opt_wd:
            loss = loss + self.settings.opt_wd * sum(p.pow(2).sum()
                                                     for p in self.optimizer.params)
        self.update(loss)
        return loss.detach()

    @torch.no_grad()
    def end_task(self, task, data):
        was_training = self.net.training
        self.net.eval()
        self.old_net = copy.deepcopy(self.net)
        features = F.normalize(self._features(data.inputs), dim=1)

        def by_herding(indices, count):
            return indices[herding(features[indices], count)]
        rebalance_by_class(self.buffer, data.inputs, data.labels, task,
                           self.task_classes(task), choose=by_herding)
        self.net.train(was_training)
        self.class_means = None

    def predict(self, inputs):
        if self.buffer.is_empty():
            return self.net(inputs)
        if self.class_means is None:
            self.class_means = self._class_means()
        features = F.normalize(self.net.features(inputs), dim=1)
        distances = torch.cdist(features, self.class_means.nan_to_num(0.0)).pow(2)
        return (-distances).masked_fill(self.class_means.isnan().any(1), float("-inf"))

    @torch.no_grad()
    def _class_means(self):
        """(classes, features): each class's mean normalised feature over the memory
        (and its mirrored images, where the augmentation mirrors), normalised; NaN rows for
        classes not in the memory."""
        count = len(self.buffer)
        examples, labels = self.buffer.examples[:count], self.buffer.labels[:count]
        features = F.normalize(self._features(examples), dim=1)
        if self.flips:  # average with the mirrored images
            flipped = F.normalize(self._features(examples.flip(-1)), dim=1)
        means = torch.full((self.layout.num_classes, features.shape[1]), float("nan"),
                           device=features.device)
        for label in torch.unique(labels).tolist():
            rows = labels == label
            mean = features[rows].mean(0)
            if self.flips:
                mean = (mean + flipped[rows].mean(0)) / 2
            means[label] = F.normalize(mean, dim=0)
        return means

    def _features(self, raw):
        """Features of raw inputs, as at test time, in batches."""
        size = max(self.config.batch_size, 256)
        return torch.cat([self.net.features(self.normalize(raw[i:i + size]))
                          for i in range(0, len(raw), size)])

    def state_dict(self):
        old = None if self.old_net is None else self.old_net.state_dict()
        return {**super().state_dict(), "old_net": old}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        if state["old_net"] is not None:
            self.old_net = copy.deepcopy(self.net)
            self.old_net.load_state_dict(state["old_net"])
        self.class_means = None

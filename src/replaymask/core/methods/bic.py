"""BiC, Bias Correction (Wu et al., CVPR 2019), after Mammoth's.

The stream of task t > 0 is the task's data joined with the memory, less a validation
split (``--valset-split`` of the memory's items, and as many of the task's own samples).
Loss: (1 - lambda) * CE over the classes seen so far (the future classes masked with
-inf) + lambda * T^2 * KD, the distillation of the network of the end of the previous
task (its outputs on the earlier classes, bias-corrected, at temperature T, ``--temp``),
with lambda = earlier classes / classes seen (the paper's Eq. 3; ``--bic-lambda mammoth``:
1 / tasks seen, Mammoth's). After each task t > 0, a bias
layer on task t's logits (a z + b, from a = 1, b = 0) is fitted by Adam (lr 0.001) on the
validation split for ``--bic-epochs`` epochs (CE over the classes seen), the network
fixed; predictions apply it. The memory: ``buffer_size // tasks seen`` items per task,
the first items of each.

Differences from Mammoth's ``bic`` at e75a491: there lambda is 1 / (t + 1) (the new
classes' share, not the old's), and its per-task quota is ``buffer_size // t`` (its task
counter moves after ``end_task``); here both follow the paper. On S-MNIST (buffer 200)
Mammoth's lambda is worth about 13 points of Class-IL accuracy: with it, replaymask's BiC
is within 2 points of Mammoth's (docs/vs-mammoth-methods.md).
"""

import copy

import torch
import torch.nn.functional as F

from .base import ContinualMethod, TaskData

METHOD = {
    "name": "bic",
    "label": "BiC",
    "class": "BiC",
    "order": 87,
    "buffer": True,
    "gms": ("built-in",
            "the class cross-entropy masks the future classes with -inf; with --gms a row of "
            "the new task is masked to its own task at m instead (memory rows keep the "
            "classes seen, unless --gms-on-buffer); the distillation is unchanged"),
    "settings": {
        "bic_epochs": {"kind": "int", "minimum": 0, "maximum": 100000, "default": 250,
                       "help": "BiC's epochs fitting the bias layer on the validation split"},
        "temp": {"kind": "float", "minimum": 0, "above_minimum": True, "default": 2.0,
                 "help": "BiC's distillation temperature"},
        "bic_lambda": {"kind": "choice", "choices": ["paper", "mammoth"], "default": "paper",
                       "omit_default": True,  # added after runs were stored: keeps their hash
                       "help": "BiC's distillation weight: earlier classes / classes seen "
                               "(the paper's), or 1 / tasks seen (Mammoth's)"},
        "valset_split": {"kind": "float", "minimum": 0, "maximum": 1, "default": 0.1,
                         "help": "BiC's share of the memory held out for the bias layer"},
    },
    # Mammoth's default learning rate (its only best arguments are Seq-CIFAR-100's)
    "best_args": {"seq-mnist": ("Mammoth defaults", {None: {"lr": 0.1}})},
    "best_args_fallback": "seq-mnist",
}

BIAS_LR = 0.001


class BiC(ContinualMethod):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.old_net, self.old_bias, self.bias = None, None, None
        self.validation = None
        self.split = None  # (task, memory items held out, task samples held out)
        self._future = {}  # see future_classes

    def begin_task(self, task):
        if task > 0:
            was_training = self.net.training
            self.old_net = copy.deepcopy(self.net).eval()
            self.net.train(was_training)
            self.old_bias = self.bias
        self.bias = None
        super().begin_task(task)

    def training_data(self, task, data):
        count = len(self.buffer)
        if task == 0 or count == 0:
            self.validation = None
            return data
        if self.split is None or self.split[0] != task:  # (a resumed task keeps its split)
            held = torch.rand(count, device=self.device) < self.settings.valset_split
            own = torch.zeros(len(data.labels), dtype=torch.bool, device=data.labels.device)
            own[torch.randperm(len(data.labels), device=own.device)[:int(held.sum())]] = True
            self.split = (task, held, own)
        _, held, own = self.split
        memory = self.buffer.examples[:count], self.buffer.labels[:count]
        self.validation = TaskData(torch.cat([data.inputs[own], memory[0][held]]),
                                   torch.cat([data.labels[own], memory[1][held]]))
        return TaskData(torch.cat([data.inputs[~own], memory[0][~held]]),
                        torch.cat([data.labels[~own], memory[1][~held]]))

    def observe(self, raw_inputs, labels):
        inputs = self.prepare(raw_inputs)
        logits = self.net(inputs)
        offsets, task = self.layout.task_offsets, self.task
        past, seen = offsets[task], offsets[task + 1]
        loss = self.class_loss(logits, labels, seen)
        if self.old_net is not None and past > 0:
            with torch.no_grad():
                old = self.corrected(self.old_net(inputs), self.old_bias, task - 1)[:, :past]
            temp = self.settings.temp
            # the distillation -(log p * q).sum(1).mean(), its sign in the subtraction
            cross = (F.log_softmax(logits[:, :past] / temp, 1)
                     * F.softmax(old / temp, 1)).sum(1).mean()
            share = past / seen if self.settings.bic_lambda == "paper" else 1 / (task + 1)
            loss = (1 - share) * loss - share * temp * temp * cross
        self.update(loss)
        return loss.detach()

    def class_loss(self, logits, labels, seen):
        """CE over the classes seen; with GMS the new task's rows masked to their task."""
        future = self.future_classes(seen, logits.shape[1], logits.device)
        if not self.gms_rule.enabled:
            return F.cross_entropy(logits.masked_fill(future, float("-inf")), labels)
        replayed = self.class_to_task[labels] < self.task
        live = self.gms_rule.live(labels, self.live_by_class, replayed=replayed)
        masked = self.gms_cross_entropy(logits, labels, live, reduction="none")
        plain = F.cross_entropy(logits.masked_fill(future, float("-inf")), labels,
                                reduction="none")
        masks_row = ~replayed | self.gms_rule.masks(replayed=True)
        return torch.where(masks_row, masked, plain).mean()

    def future_classes(self, seen: int, classes: int, device) -> torch.Tensor:
        """(classes,) bool: True for the classes after the first ``seen`` (made once)."""
        key = (seen, classes, device)
        if key not in self._future:
            self._future[key] = torch.arange(classes, device=device) >= seen
        return self._future[key]

    def corrected(self, logits, bias, task):
        """``logits`` with the bias layer ``bias`` = (a, b) applied to ``task``'s classes."""
        if bias is None:
            return logits
        classes = self.task_classes(task)
        out = logits.clone()
        out[:, classes.start:classes.stop] = bias[0] * logits[:, classes.start:classes.stop] \
            + bias[1]
        return out

    def predict(self, inputs):
        return self.corrected(self.net(inputs), self.bias, self.task)

    def end_task(self, task, data):
        if task > 0 and self.validation is not None and len(self.validation.labels):
            self.bias = self.fit_bias(task)
        self.rebuild_memory(task, data)

    def fit_bias(self, task):
        """(a, b) minimising the validation split's CE over the classes seen, with the
        network's outputs fixed (computed once)."""
        seen = self.layout.task_offsets[task + 1]
        was_training = self.net.training
        self.net.eval()
        with torch.no_grad():
            logits = torch.cat([self.net(self.normalize(part)) for part in
                                self.validation.inputs.split(self.config.batch_size)])
        self.net.train(was_training)
        logits, labels = logits[:, :seen].float(), self.validation.labels
        bias = torch.tensor([1.0, 0.0], device=logits.device, requires_grad=True)
        optimizer = torch.optim.Adam([bias], lr=BIAS_LR)
        for _ in range(self.settings.bic_epochs):
            for rows in torch.arange(len(labels), device=labels.device).split(
                    self.config.batch_size):
                optimizer.zero_grad()
                F.cross_entropy(self.corrected(logits[rows], bias, task), labels[rows]).backward()
                optimizer.step()
        return bias.detach()

    @torch.no_grad()
    def rebuild_memory(self, task, data):
        """``buffer_size // tasks seen`` items per task: the earlier tasks' first items and
        the first samples of this task's data."""
        quota, buffer, count = self.buffer.capacity // (task + 1), self.buffer, len(self.buffer)
        own = self.class_to_task[data.labels] == task
        new_inputs, new_labels = data.inputs[own][:quota], data.labels[own][:quota]
        new_tasks = torch.full_like(new_labels, task)
        if count:
            kept = torch.cat([(buffer.task_ids[:count] == earlier).nonzero().squeeze(1)[:quota]
                              for earlier in range(task)])
            new_inputs = torch.cat([buffer.examples[kept], new_inputs])
            new_labels = torch.cat([buffer.labels[kept], new_labels])
            new_tasks = torch.cat([buffer.task_ids[kept], new_tasks])
        buffer.replace(new_inputs, new_labels, new_tasks)

    def state_dict(self):
        old = None if self.old_net is None else self.old_net.state_dict()
        return {**super().state_dict(), "old_net": old, "bias": self.bias,
                "old_bias": self.old_bias, "split": self.split}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.bias, self.old_bias, self.split = state["bias"], state["old_bias"], state["split"]
        if state["old_net"] is not None:
            self.old_net = copy.deepcopy(self.net).eval()
            self.old_net.load_state_dict(state["old_net"])

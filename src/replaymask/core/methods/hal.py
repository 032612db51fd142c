"""HAL, Hindsight Anchor Learning (Chaudhry et al., AAAI 2021), after Mammoth's.

Each step: theta_1 = theta_0 - lr * g, g the gradient of ER's cross-entropy (stream batch
and a replay batch); then, once anchors exist, the step is taken again from theta_0 with
g + the gradient at theta_0 of ``--hal-lambda`` * mean((f_theta_1(anchors) -
f_theta(anchors))^2): the update may not move the anchors' outputs. ``phi`` follows the
mean feature of the stream batches (``phi <- beta phi + (1 - beta) mean``, ``--beta``).

Anchors, after each task, one per class of the task, in the network's input space:
from uniform noise, 100 SGD steps (the run's learning rate) on
-CE(f_theta_m(e), c) + CE(f_theta(e), c) + gamma ||features_theta(e) - phi||^2
(``--gamma``), theta_m being the network fine-tuned by one step on a batch of the memory:
points the class would be forgotten at, still recognised now, and typical. The classes'
anchors are optimised together as one batch (their losses are independent sums). The
memory is ER's reservoir.

Difference from Mammoth's ``hal`` at e75a491: it resets its buffer's reservoir counter at
each task through ``buffer.task_number``, which its current buffer no longer has.
"""

import copy

import torch
import torch.nn.functional as F

from .base import ContinualMethod

METHOD = {
    "name": "hal",
    "label": "HAL",
    "class": "HAL",
    "order": 88,
    "buffer": True,
    "gms": ("rows",
            "one cross-entropy over the stream batch and a replay batch: stream rows masked, "
            "replayed rows only with --gms-on-buffer; the anchors' terms are unchanged"),
    "settings": {
        "hal_lambda": {"kind": "float", "minimum": 0, "default": 0.1,
                       "help": "HAL's weight of the anchors' output change"},
        "beta": {"kind": "float", "minimum": 0,
                 "help": "HAL's momentum of the running mean feature phi"},
        "gamma": {"kind": "float", "minimum": 0,
                  "help": "HAL's weight of the anchors' distance to the mean feature"},
    },
    # the DER paper's arguments for S-MNIST (Buzzega et al. 2020; Mammoth's utils/best_args.py,
    # unchanged from its first commit 7ab9db9 to e75a491)
    "best_args": {"seq-mnist": ("DER paper", {
        200: {"lr": 0.1, "minibatch_size": 128, "batch_size": 128, "hal_lambda": 0.1,
              "beta": 0.7, "gamma": 0.5},
        500: {"lr": 0.1, "minibatch_size": 128, "batch_size": 128, "hal_lambda": 0.1,
              "beta": 0.2, "gamma": 0.5},
        5120: {"lr": 0.1, "minibatch_size": 128, "batch_size": 128, "hal_lambda": 0.1,
               "beta": 0.7, "gamma": 0.5}})},
    "best_args_fallback": "seq-mnist",
}

ANCHOR_STEPS = 100


class HAL(ContinualMethod):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.require_features()
        self.anchors, self.phi = None, None

    def observe(self, raw_inputs, labels):
        params = self.optimizer.params
        stream = self.prepare(raw_inputs)
        inputs, targets = stream, labels
        if not self.buffer.is_empty():
            replay = self.buffer.sample(self.config.minibatch_size)
            inputs = torch.cat([stream, self.prepare(replay.examples)])
            targets = torch.cat([labels, replay.labels])
        start = [p.detach().clone() for p in params]
        loss = self.stream_and_replay_loss(self.net(inputs), targets, stream=len(labels))
        self.update(loss)
        if self.anchors is not None:
            with torch.no_grad():
                moved = self.net(self.anchors)
                for p, p0 in zip(params, start, strict=True):
                    p.copy_(p0)
            anchored = self.settings.hal_lambda * (moved - self.net(self.anchors)).pow(2).mean()
            anchored.backward()  # onto the cross-entropy's gradient, kept from the step
            self.optimizer.step()
        with torch.no_grad():
            mean = self.net.features(stream).mean(0)
            beta, previous = self.settings.beta, 0.0 if self.phi is None else self.phi
            self.phi = beta * previous + (1 - beta) * mean
        self.remember(raw_inputs, labels)
        return loss.detach()

    def end_task(self, task, data):
        if self.buffer.is_empty() or self.phi is None:
            return
        current = copy.deepcopy(self.net).eval()
        forgetting = copy.deepcopy(self.net).train()
        batch = self.buffer.sample(self.config.batch_size)
        tuner = torch.optim.SGD(forgetting.parameters(), lr=self.config.lr)
        F.cross_entropy(forgetting(self.prepare(batch.examples)), batch.labels).backward()
        tuner.step()
        forgetting.eval()
        for net in (current, forgetting):
            net.requires_grad_(False)
        classes = torch.arange(self.task_classes(task).start, self.task_classes(task).stop,
                               device=self.device)
        shape = self.normalize(data.inputs[:1]).shape[1:]
        anchors = torch.rand((len(classes), *shape), device=self.device, requires_grad=True)
        optimizer = torch.optim.SGD([anchors], lr=self.config.lr)
        for _ in range(ANCHOR_STEPS):
            optimizer.zero_grad()
            loss = (-F.cross_entropy(forgetting(anchors), classes, reduction="sum")
                    + F.cross_entropy(current(anchors), classes, reduction="sum")
                    + self.settings.gamma * (current.features(anchors) - self.phi).pow(2).sum())
            loss.backward()
            optimizer.step()
        new = anchors.detach()
        self.anchors = new if self.anchors is None else torch.cat([self.anchors, new])

    def state_dict(self):
        return {**super().state_dict(), "anchors": self.anchors, "phi": self.phi}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.anchors, self.phi = state["anchors"], state["phi"]

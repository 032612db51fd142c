"""Instrumentation that shows *why* GMS changes stability (``replaymask run --analysis``).

Every 100 steps (the loop's loss read-back interval), without touching the training
itself, it measures on fixed probe batches:

* ``grad_old`` / ``grad_current`` / ``grad_future``: the mean per-sample norm of the
  gradient that the method's stream loss sends into the logits of earlier-task,
  current-task and later-task classes (current-task training samples);
* ``old_class_mass``: the probability mass the stream loss's softmax puts on
  earlier-task classes for those samples (0 under hard masking);
* ``old_logit_drift``: the mean absolute change, since the task began, of the
  earlier-task class logits on old samples: the buffer's content at the start of the
  task, or, for methods without a buffer, a fixed draw of earlier tasks' training data;
* ``test_into_later`` / ``test_into_earlier``: of a fixed draw of test samples of the
  tasks seen so far, the percent whose Class-IL prediction (over the seen classes) falls
  in a later / an earlier task than their own: the task confusion over training, not
  only at its end.
"""

from __future__ import annotations

import torch

from .gms import gms_masked_logits, live_classes

PROBE_SIZE = 256
TEST_PROBE_SIZE = 1000  # test samples of the seen tasks, for the confusion over training


class StabilityProbe:
    def __init__(self, method, benchmark, seed: int):
        self.method = method
        self.benchmark = benchmark
        self.generator = torch.Generator().manual_seed(seed + 2)
        self.test_generator = torch.Generator().manual_seed(seed + 3)  # the probes' own draws
        self.records: list[dict] = []
        self.task = 0

    def _draw(self, tasks: list[int]) -> torch.Tensor:
        indices = torch.cat([self.benchmark.task_indices("train", t) for t in tasks])
        pick = torch.randperm(len(indices), generator=self.generator)[:PROBE_SIZE]
        return indices[pick.to(indices.device)]

    @torch.no_grad()
    def begin_task(self, task: int) -> None:
        self.task = task
        b = self.benchmark
        current = self._draw([task])
        self.stream_images, self.stream_labels = b.train_inputs[current], b.train_labels[current]
        self.old_classes = b.task_offsets[task]
        seen = torch.cat([b.task_indices("test", t) for t in range(task + 1)])
        pick = torch.randperm(len(seen), generator=self.test_generator)[:TEST_PROBE_SIZE]
        self.test_probe = seen[pick.to(seen.device)]
        self.old_images = None
        if task == 0:
            return
        buffer = self.method.buffer
        if not buffer.is_empty():
            self.old_images = buffer.examples[:len(buffer)][
                buffer.labels[:len(buffer)] < self.old_classes][:PROBE_SIZE].clone()
        if self.old_images is None or len(self.old_images) == 0:
            self.old_images = b.train_inputs[self._draw(list(range(task)))]
        self.old_logits_at_start = self._old_logits()

    def _old_logits(self) -> torch.Tensor:
        return self.method.net(self.benchmark.prepare(self.old_images))[:, :self.old_classes]

    def _test_confusion(self) -> tuple[float, float]:
        """Percent of the test probe predicted (over the seen classes) into a later and
        into an earlier task than its own (evaluation mode, no gradient)."""
        b, net = self.benchmark, self.method.net
        labels = b.test_labels[self.test_probe]
        logits = net(b.prepare(b.test_inputs[self.test_probe]))[:, :b.task_offsets[self.task + 1]]
        task_of = b.class_to_task.to(labels.device)
        true, predicted = task_of[labels], task_of[logits.argmax(1).to(labels.device)]
        return (100.0 * (predicted > true).float().mean().item(),
                100.0 * (predicted < true).float().mean().item())

    def record(self, step: int) -> None:
        method, config = self.method, self.method.config
        was_training = method.net.training
        method.net.eval()
        with torch.no_grad():
            logits = method.net(self.benchmark.prepare(self.stream_images))
        logits.requires_grad_(True)
        loss = method.stream_loss(logits, self.stream_labels, reduction="sum")
        (gradient,) = torch.autograd.grad(loss, logits)
        first, last = self.old_classes, self.benchmark.task_offsets[self.task + 1]
        with torch.no_grad():
            if config.gms:
                live = live_classes(self.stream_labels, method.class_to_task)
                seen_by_softmax = gms_masked_logits(logits.detach(), live, config.gms_mask_value)
            else:
                seen_by_softmax = logits.detach()
            probabilities = torch.softmax(seen_by_softmax, dim=1)
            drift = None
            if self.old_images is not None:
                drift = (self._old_logits() - self.old_logits_at_start).abs().mean().item()
            later, earlier = self._test_confusion()
        method.net.train(was_training)

        def norm(part):
            return part.norm(dim=1).mean().item() if part.shape[1] else 0.0

        self.records.append({
            "task": self.task, "step": step,
            "grad_old": norm(gradient[:, :first]),
            "grad_current": norm(gradient[:, first:last]),
            "grad_future": norm(gradient[:, last:]),
            "old_class_mass": probabilities[:, :first].sum(1).mean().item(),
            "old_logit_drift": drift,
            "test_into_later": later,
            "test_into_earlier": earlier,
        })

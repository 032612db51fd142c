"""X-DER, eXtended Dark Experience Replay (Boschini et al., TPAMI 2022), after Mammoth's.

Per step of task t (C classes per task, T tasks; "head" k = the logits of task k):
  stream: cross-entropy over head t only (a task-local softmax; with ``--gms`` the GMS
    loss with mask value m, which for m = -inf is the same loss);
  + alpha * MSE(all logits of a buffer draw, its stored logits)
  + beta * CE over heads 0..t-1 of a second draw (with ``--gms-on-buffer``: GMS to the
    item's own task);
  + lambd * SupCon over the future heads t+1.. of strongly augmented views of the stream
    batch and a buffer draw (they learn features before their classes arrive);
  + eta * hinge(max future logit + margin - max own-head logit), stream and buffer
    (and, with ``--past-constraint``, one between past and current softmax scores).
The stored logits are kept current: the future heads of past items are replaced by the
network's (rescaled below gamma times the true-class logit), once per item and task,
chosen uniformly among its draws. The memory is class-balanced and filled at the end of
each task from that task's data, not by reservoir sampling.

Differences from the reference: no BatchNorm "alignment" and no distance-preserving
term (both off in the TPAMI version), and the strong augmentation is batched on the
device (see :class:`replaymask.data.augment.StrongTransform`).
"""

import torch
import torch.nn.functional as F

from ...data.augment import StrongTransform
from ..backbones import frozen_batchnorm_stats
from ..contrastive import supervised_contrastive_loss
from .base import ContinualMethod

METHOD = {
    "name": "xder",
    "label": "X-DER",
    "class": "XDER",
    "order": 70,
    "buffer": True,
    "gms": ("built-in",
            "the stream's task-local softmax (the other heads at -inf) becomes GMS at m; the "
            "past-heads replay cross-entropy only with --gms-on-buffer"),
    "stores_logits": True,
    "settings": {
        "alpha": {"kind": "float", "minimum": 0,
                  "help": "weight of the logit replay (MSE to the stored logits)"},
        "beta": {"kind": "float", "minimum": 0,
                 "help": "weight of the label replay (cross-entropy on a second draw)"},
        "gamma": {"kind": "float", "minimum": 0,
                  "help": "cap on transplanted logits (x the true-class logit)"},
        "lambd": {"kind": "float", "minimum": 0,
                  "help": "weight of the future heads' SupCon loss"},
        "constr_eta": {"kind": "float", "minimum": 0,
                       "help": "weight of the margin constraints"},
        "constr_margin": {"kind": "float", "minimum": 0, "help": "margin of the constraints"},
        "simclr_temp": {"kind": "float", "minimum": 0, "above_minimum": True,
                        "help": "SupCon temperature"},
        "simclr_batch_size": {"kind": "int", "minimum": 0, "maximum": 1000000,
                              "help": "buffer items added to the SupCon batch"},
        "simclr_num_aug": {"kind": "int", "minimum": 2, "maximum": 1000000,
                           "help": "augmented views per SupCon item"},
        "past_constraint": {"kind": "bool", "help": "also constrain past vs current heads"},
    },
    # Mammoth's best arguments exist for Seq-CIFAR-100 only: other benchmarks use them
    "best_args": {
        "seq-cifar100": ("Mammoth", {
            500: {"lr": 0.03, "minibatch_size": 32, "alpha": 0.3, "beta": 0.8, "gamma": 0.85,
                  "lambd": 0.05, "constr_eta": 0.001, "constr_margin": 0.7,
                  "simclr_temp": 5.0, "simclr_batch_size": 64, "simclr_num_aug": 2,
                  "past_constraint": False},
            2000: {"lr": 0.03, "minibatch_size": 32, "alpha": 0.6, "beta": 0.9, "gamma": 0.85,
                   "lambd": 0.05, "constr_eta": 0.01, "constr_margin": 0.2,
                   "simclr_temp": 5.0, "simclr_batch_size": 64, "simclr_num_aug": 2,
                   "past_constraint": False}}),
    },
    "best_args_fallback": "seq-cifar100",
    "equal_tasks": "its SupCon loss and constraints split the future logits into heads of "
                   "one size",
}


def transplant_logits(stored, outputs, labels, first_head, n_heads, per_task, gamma):
    """``stored`` with heads ``first_head .. first_head+n_heads-1`` taken from ``outputs``,
    scaled by gamma * (true-class stored logit) / (their max) where that max exceeds the
    true-class logit, so the transplanted heads never outvote the true class."""
    columns = slice(first_head * per_task, (first_head + n_heads) * per_task)
    part = outputs[:, columns]
    true_logit = stored.gather(1, labels[:, None]).squeeze(1)
    highest = part.max(1).values
    scaled = part * (gamma * true_logit / highest)[:, None]
    result = stored.clone()
    result[:, columns] = torch.where((highest > true_logit)[:, None], scaled, part)
    return result


def _positive_mean(values, weights):
    """Mean of the positive entries of ``values`` (weights 0 leave rows out); 0 if none."""
    positive = (values > 0) * weights
    return (values.clamp(min=0) * positive).sum() / positive.sum().clamp(min=1)


class XDER(ContinualMethod):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.n_tasks = self.layout.n_tasks
        self.per_task = self.layout.num_classes // self.n_tasks
        self.strong = StrongTransform(self.mean, self.std, self.generator,
                                      channels_last=getattr(self.prepare, "channels_last", False))
        self.update_counter = torch.zeros(self.buffer.capacity, device=self.buffer.device)

    def state_dict(self):
        return {**super().state_dict(), "update_counter": self.update_counter}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.update_counter = state["update_counter"].to(self.buffer.device)

    def stream_loss(self, logits, labels, reduction="mean"):
        if self.gms_rule.masks(replayed=False):
            return super().stream_loss(logits, labels, reduction)
        first = self.task * self.per_task
        return F.cross_entropy(logits[:, first:first + self.per_task], labels - first,
                               reduction=reduction)

    def replay_loss(self, logits, labels, reduction="mean"):
        if self.gms_rule.masks(replayed=True):
            return super().replay_loss(logits, labels, reduction)
        return F.cross_entropy(logits[:, :self.task * self.per_task], labels, reduction=reduction)

    def observe(self, raw_inputs, labels):
        settings, task, per_task = self.settings, self.task, self.per_task
        seen = (task + 1) * per_task
        logits = self.net(self.prepare(raw_inputs))
        loss = self.stream_loss(logits, labels)
        replayed = None
        if not self.buffer.is_empty():
            first, second = (self.buffer.sample(self.config.minibatch_size) for _ in range(2))
            first_out = self.net(self.prepare(first.examples))
            second_out = self.net(self.prepare(second.examples))
            loss = loss + settings.alpha * F.mse_loss(first_out, first.logits)
            loss = loss + settings.beta * self.replay_loss(second_out, second.labels)
            replayed = self._refresh_future_heads(first, second, first_out, second_out)
        if task < self.n_tasks - 1:
            loss = loss + settings.lambd * self._future_consistency(raw_inputs, labels)
            bad, good, weight = logits[:, seen:], logits[:, seen - per_task:seen], None
            if replayed is not None:
                outputs, replay_labels, weight = replayed
                own_head = outputs.view(len(outputs), self.n_tasks, per_task)[
                    torch.arange(len(outputs), device=outputs.device), replay_labels // per_task]
                bad, good = torch.cat([bad, outputs[:, seen:]]), torch.cat([good, own_head])
                weight = torch.cat([torch.ones_like(logits[:, 0]), weight])
            margin = bad.max(1).values + settings.constr_margin - good.max(1).values
            loss = loss + settings.constr_eta * _positive_mean(
                margin, torch.ones_like(margin) if weight is None else weight)
        if settings.past_constraint and task > 0:
            scores = F.softmax(logits[:, :seen], 1)
            margin = (scores[:, :seen - per_task].max(1).values.detach() + settings.constr_margin
                      - scores[:, seen - per_task:].max(1).values)
            loss = loss + settings.constr_eta * _positive_mean(margin, torch.ones_like(margin))
        self.update(loss)
        return loss.detach()

    @torch.no_grad()
    def _refresh_future_heads(self, first, second, first_out, second_out):
        """Transplant the current future heads into the stored logits of the drawn past
        items (each item once per task, uniformly among its draws: a reservoir of one).

        Returns the draws' outputs, labels and a weight that is 0 on repeated slots."""
        index = torch.cat([first.index, second.index])
        outputs = torch.cat([first_out, second_out])
        labels = torch.cat([first.labels, second.labels])
        stored = torch.cat([first.logits, second.logits])
        task_ids = torch.cat([first.task_ids, second.task_ids])
        # each row's first occurrence: repeated slots take its values, so writes agree
        first_row = (index[:, None] == index[None, :]).int().argmax(1)
        is_first = first_row == torch.arange(len(index), device=index.device)
        past = labels < self.task * self.per_task
        self.update_counter.index_put_((index,), (is_first & past).float(), accumulate=True)
        draw = torch.rand(len(index), generator=self.generator, device=index.device)
        take = (past & (draw * self.update_counter[index] < 1))[first_row]
        fresh = transplant_logits(stored, outputs.float(), labels, self.task,
                                  self.n_tasks - self.task, self.per_task, self.settings.gamma)
        self.buffer.logits[index] = torch.where(take[:, None], fresh, stored)[first_row]
        self.buffer.task_ids[index] = torch.where(take, self.task, task_ids)[first_row]
        return outputs, labels, is_first.float()

    def _future_consistency(self, raw_inputs, labels):
        """SupCon on each future head, over strongly augmented views; BatchNorm statistics
        are not updated by these passes."""
        settings, per_task = self.settings, self.per_task
        raw, views_labels = raw_inputs, labels
        if not self.buffer.is_empty() and settings.simclr_batch_size > 0:
            extra = self.buffer.sample(settings.simclr_batch_size)
            raw = torch.cat([extra.examples, raw])
            views_labels = torch.cat([extra.labels, labels])
        views = settings.simclr_num_aug
        with torch.no_grad():
            repeated = raw.repeat_interleave(views, 0)
            rgb_bytes = repeated.dim() == 4 and repeated.shape[1] == 3 \
                and repeated.dtype == torch.uint8  # what the colour augmentation takes
            augmented = self.strong(repeated) if rgb_bytes else self.prepare(repeated)
        with frozen_batchnorm_stats(self.net):
            outputs = self.net(augmented).float()
        n_heads = self.n_tasks - self.task - 1
        future = outputs[:, (self.task + 1) * per_task:].reshape(len(raw), views, n_heads,
                                                                  per_task)
        features = F.normalize(future.permute(2, 0, 1, 3), dim=-1)  # (heads, N, views, C)
        per_sample = supervised_contrastive_loss(features, views_labels, settings.simclr_temp)
        return per_sample.sum() / (n_heads * len(raw))

    @torch.no_grad()
    def end_task(self, task, data):
        """Rebalance the memory: every seen class gets capacity // seen_classes slots, the
        old classes keeping their first items and the new ones taking the first items of
        this task's (shuffled) data, with logits whose past heads are rescaled; then
        refresh the future heads of the past items with the current network."""
        images, labels = data.inputs, data.labels
        per_task, capacity, buffer = self.per_task, self.buffer.capacity, self.buffer
        device = buffer.device
        keep_examples, keep_labels, keep_logits, keep_tasks = [], [], [], []
        if task > 0 and not buffer.is_empty():
            quota = capacity // ((task + 1) * per_task)
            count = len(buffer)
            order = torch.sort(buffer.labels[:count], stable=True).indices
            ranks = _rank_within_class(buffer.labels[order])
            kept = order[ranks < quota]
            keep_examples, keep_labels = [buffer.examples[kept]], [buffer.labels[kept]]
            keep_logits, keep_tasks = [buffer.logits[kept]], [buffer.task_ids[kept]]
        free = capacity - sum(len(x) for x in keep_labels)
        quota = torch.full((per_task,), free // per_task, device=device)
        extra = torch.randperm(per_task, generator=self.generator, device=device)
        quota[extra[:free - (free // per_task) * per_task]] += 1
        local = labels - task * per_task
        chosen = (_rank_within_class(local) < quota[local]).nonzero().squeeze(1)
        with frozen_batchnorm_stats(self.net):
            new_logits = self._forward_in_chunks(images[chosen]).float()
            if task > 0:
                new_logits = transplant_logits(new_logits, new_logits, labels[chosen], 0, task,
                                               per_task, self.settings.gamma)
            buffer.replace(
                torch.cat(keep_examples + [images[chosen]]),
                torch.cat(keep_labels + [labels[chosen]]),
                torch.cat(keep_tasks + [torch.full_like(labels[chosen], task)]),
                torch.cat(keep_logits + [new_logits]))
            count = len(buffer)
            if task > 0 and count:
                outputs = self._forward_in_chunks(buffer.examples[:count]).float()
                past = (buffer.labels[:count] < task * per_task)[:, None]
                refreshed = transplant_logits(buffer.logits[:count], outputs,
                                              buffer.labels[:count], task, self.n_tasks - task,
                                              per_task, self.settings.gamma)
                buffer.logits[:count] = torch.where(past, refreshed, buffer.logits[:count])
                buffer.task_ids[:count] = torch.where(past[:, 0], task, buffer.task_ids[:count])
        self.update_counter.zero_()

    def _forward_in_chunks(self, raw):
        size = self.config.batch_size
        outputs = [self.net(self.prepare(raw[i:i + size])) for i in range(0, len(raw), size)]
        return torch.cat(outputs) if outputs else torch.zeros(0, len(self.class_to_task),
                                                              device=raw.device)


def _rank_within_class(labels: torch.Tensor) -> torch.Tensor:
    """For each position, how many earlier positions hold the same label."""
    one_hot = F.one_hot(labels, int(labels.max()) + 1 if len(labels) else 1)
    return ((one_hot.cumsum(0) - one_hot) * one_hot).sum(1)

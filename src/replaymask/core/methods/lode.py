"""LODE, loss decoupling (Liang & Li, NeurIPS 2023), on ER: its ER-based form.

From the second task on, a stream row of task t contributes
  C * CE over task t's classes alone (every other logit masked with -inf)
  + rho * (|new| / |old|) * CE of "new" in a two-way softmax between the log-sum-exp of
    the earlier tasks' logits and that of task t's (old against new),
and a replay batch the cross-entropy over the classes seen so far. The first task is
plain cross-entropy. The two stream terms separate what GMS's finite m mixes: the
within-task softmax, and how far new classes rise above old ones.

With ``--gms`` the -inf of the within-task term becomes the mask value m (GMS on the
stream row: ``--gms`` with the default m = -inf is the same run as without it);
``--gms-on-buffer`` masks the replayed rows to their own task too.
"""

import torch
import torch.nn.functional as F

from .base import ContinualMethod

METHOD = {
    "name": "lode",
    "label": "LODE",
    "class": "LODE",
    "order": 89,
    "buffer": True,
    "gms": ("built-in",
            "the within-task term's -inf on the other classes becomes m; the old-against-"
            "new term is unchanged"),
    "settings": {
        "lode_c": {"kind": "float", "minimum": 0, "default": 1.0,
                   "help": "LODE's C: the weight of the within-task cross-entropy"},
        "lode_rho": {"kind": "float", "minimum": 0, "default": 0.1,
                     "help": "LODE's rho: the old-against-new term's weight is "
                             "rho * new classes / old classes"},
    },
    # none published for these benchmarks: ER's, whose step it shares; C and rho are the
    # authors' defaults
    "best_args_of": "er",
}


class LODE(ContinualMethod):
    def observe(self, raw_inputs, labels):
        logits = self.net(self.prepare(raw_inputs))
        if self.task == 0 or self.buffer.is_empty():
            loss = F.cross_entropy(logits, labels)
        else:
            offsets, task = self.layout.task_offsets, self.task
            old, new = offsets[task], offsets[task + 1] - offsets[task]
            within = self.gms_cross_entropy(logits, labels, self.live_by_class[labels])
            pooled = torch.stack([logits[:, :old].logsumexp(1),
                                  logits[:, old:old + new].logsumexp(1)], dim=1)
            old_against_new = F.cross_entropy(pooled, torch.ones_like(labels))
            replay = self.buffer.sample(self.config.minibatch_size)
            replay_logits = self.net(self.prepare(replay.examples))
            seen = offsets[task + 1]
            if self.gms_rule.masks(replayed=True):
                replay_loss = self.replay_loss(replay_logits, replay.labels)
            else:
                replay_loss = F.cross_entropy(replay_logits[:, :seen], replay.labels)
            loss = (self.settings.lode_c * within
                    + self.settings.lode_rho * new / old * old_against_new + replay_loss)
        self.update(loss)
        self.remember(raw_inputs, labels)
        return loss.detach()

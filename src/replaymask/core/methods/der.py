"""Dark Experience Replay (Buzzega et al. 2020): stream CE + alpha * MSE to stored logits.

Stored logits are the raw (never masked) outputs: by default those of the stream
forward pass before the step (Mammoth); ``--der-logits post-step`` stores those of a
fresh forward pass after it (the GMS authors' fork).
"""

import torch
import torch.nn.functional as F

from .base import ContinualMethod


class DER(ContinualMethod):
    def observe(self, raw_inputs, labels):
        inputs = self.prepare(raw_inputs)
        logits = self.net(inputs)
        loss = self.stream_loss(logits, labels) + self.logit_replay_loss()
        self.update(loss)
        self.remember(raw_inputs, labels, logits=self.logits_to_store(inputs, logits))
        return loss.detach()

    def logit_replay_loss(self) -> torch.Tensor | float:
        if self.buffer.is_empty():
            return 0.0
        replay = self.buffer.sample(self.config.minibatch_size)
        replayed_logits = self.net(self.prepare(replay.examples))
        return self.config.alpha * F.mse_loss(replayed_logits, replay.logits)

    def logits_to_store(self, inputs, stream_logits):
        if self.config.der_logits == "post-step":
            with torch.no_grad():
                return self.net(inputs)
        return stream_logits.detach()

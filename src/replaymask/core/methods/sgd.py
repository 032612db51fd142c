"""Fine-tuning: the lower bound. Only the stream cross-entropy (GMS-masked with --gms)."""

from .base import ContinualMethod


class SGD(ContinualMethod):
    uses_buffer = False

    def observe(self, raw_inputs, labels):
        loss = self.stream_loss(self.net(self.prepare(raw_inputs)), labels)
        self.update(loss)
        return loss.detach()

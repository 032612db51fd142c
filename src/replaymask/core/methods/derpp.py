"""DER++ (Buzzega et al. 2020): DER plus beta * CE on an independent second buffer draw."""

from .der import DER


class DERpp(DER):
    def observe(self, raw_inputs, labels):
        inputs = self.prepare(raw_inputs)
        logits = self.net(inputs)
        loss = self.stream_loss(logits, labels) + self.logit_replay_loss()
        if not self.buffer.is_empty():
            replay = self.buffer.sample(self.config.minibatch_size)
            replayed_logits = self.net(self.prepare(replay.examples))
            loss = loss + self.config.beta * self.replay_loss(replayed_logits, replay.labels)
        self.update(loss)
        self.remember(raw_inputs, labels, logits=self.logits_to_store(inputs, logits))
        return loss.detach()

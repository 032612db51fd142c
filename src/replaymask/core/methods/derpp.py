"""DER++ (Buzzega et al. 2020): DER plus beta * CE on an independent second buffer draw."""

from .der import DER

METHOD = {
    "name": "derpp",
    "label": "DER++",
    "class": "DERpp",
    "order": 50,
    "buffer": True,
    "gms": ("stream",
            "the stream cross-entropy masked, the label replay's only with --gms-on-buffer; "
            "the logit replay is unchanged"),
    "stores_logits": True,
    "settings": {
        "alpha": {"kind": "float", "minimum": 0,
                  "help": "weight of the logit replay (MSE to the stored logits)"},
        "beta": {"kind": "float", "minimum": 0,
                 "help": "weight of the label replay (cross-entropy on a second draw)"},
        "der_logits": {
            "kind": "choice", "choices": ["stream", "post-step"], "default": "stream",
            "help": "logits stored: of the stream forward pass (Mammoth) or of a fresh pass "
                    "after the step (the GMS authors' fork); never masked"},
    },
    # the DER paper's best arguments, and Mammoth's for Seq-CIFAR-100
    "best_args": {
        "seq-mnist": ("DER paper", {
            200: {"lr": 0.03, "minibatch_size": 128, "alpha": 0.2, "beta": 1.0},
            500: {"lr": 0.03, "minibatch_size": 10, "alpha": 1.0, "beta": 0.5},
            5120: {"lr": 0.1, "minibatch_size": 64, "alpha": 0.2, "beta": 0.5}}),
        "seq-cifar10": ("DER paper", {
            200: {"lr": 0.03, "minibatch_size": 32, "alpha": 0.1, "beta": 0.5},
            500: {"lr": 0.03, "minibatch_size": 32, "alpha": 0.2, "beta": 0.5},
            5120: {"lr": 0.03, "minibatch_size": 32, "alpha": 0.1, "beta": 1.0}}),
        "seq-tinyimg": ("DER paper", {
            200: {"lr": 0.03, "minibatch_size": 32, "alpha": 0.1, "beta": 1.0},
            500: {"lr": 0.03, "minibatch_size": 32, "alpha": 0.2, "beta": 0.5},
            5120: {"lr": 0.03, "minibatch_size": 32, "alpha": 0.1, "beta": 0.5}}),
        "seq-cifar100": ("Mammoth", {
            500: {"lr": 0.03, "minibatch_size": 32, "alpha": 0.1, "beta": 0.5},
            2000: {"lr": 0.03, "minibatch_size": 32, "alpha": 0.1, "beta": 0.5}}),
    },
}


class DERpp(DER):
    def observe(self, raw_inputs, labels):
        inputs = self.prepare(raw_inputs)
        logits = self.net(inputs)
        loss = self.stream_loss(logits, labels) + self.logit_replay_loss()
        if not self.buffer.is_empty():
            replay = self.buffer.sample(self.config.minibatch_size)
            replayed_logits = self.net(self.prepare(replay.examples))
            loss = loss + self.settings.beta * self.replay_loss(replayed_logits, replay.labels)
        self.update(loss)
        self.remember(raw_inputs, labels, logits=self.logits_to_store(inputs, logits))
        return loss.detach()

"""DER++ with the General Masked Softmax (GMS), for Mammoth.

Copy this file into Mammoth's ``models/`` folder (replaymask installed beside Mammoth):

    python main.py --model derpp_gms --dataset seq-mnist --buffer_size 200 --lr 0.03 \\
        --minibatch_size 10 --alpha 0.2 --beta 1.0 --batch_size 10 --n_epochs 1 --gms 1

With ``--gms 0`` (the default) it trains exactly as Mammoth's ``derpp``; with ``--gms 1``
the stream cross-entropy is masked to each sample's own task's classes. The logit replay
(alpha) is untouched and the stored logits are never masked; the label replay (beta) is
masked too with ``--gms_on_buffer 1``.
"""

from models.derpp import Derpp
from torch.nn import functional as F

# Mammoth fills a missing --minibatch_size only for model modules that have a Buffer
from utils.buffer import Buffer  # noqa: F401

from replaymask.integrations.mammoth import GMSLoss, add_gms_args


class DerppGms(Derpp):
    """Continual learning via Dark Experience Replay++, with GMS on the stream samples."""
    NAME = 'derpp_gms'
    COMPATIBILITY = ['class-il', 'task-il']  # GMS needs each class in one task

    @staticmethod
    def get_parser(parser):
        return add_gms_args(Derpp.get_parser(parser))

    def __init__(self, backbone, loss, args, transform, dataset=None):
        super().__init__(backbone, loss, args, transform, dataset=dataset)
        self.gms = GMSLoss(self)

    def observe(self, inputs, labels, not_aug_inputs, epoch=None):
        self.opt.zero_grad()
        outputs = self.net(inputs)
        loss = self.gms.stream_loss(outputs, labels)
        if not self.buffer.is_empty():
            replay_inputs, _, replay_logits = self.buffer.get_data(
                self.args.minibatch_size, transform=self.transform, device=self.device)
            loss = loss + self.args.alpha * F.mse_loss(self.net(replay_inputs), replay_logits)
            replay_inputs, replay_labels, _ = self.buffer.get_data(
                self.args.minibatch_size, transform=self.transform, device=self.device)
            loss = loss + self.args.beta * self.gms.replay_loss(self.net(replay_inputs),
                                                                replay_labels)
        loss.backward()
        self.opt.step()
        self.buffer.add_data(examples=not_aug_inputs, labels=labels, logits=outputs.data)
        return loss.item()

"""Experience Replay with the General Masked Softmax (GMS), for Mammoth.

Copy this file into Mammoth's ``models/`` folder (replaymask installed beside Mammoth):

    python main.py --model er_gms --dataset seq-mnist --buffer_size 200 --lr 0.01 \\
        --minibatch_size 10 --batch_size 10 --n_epochs 1 --gms 1 [--gms_mask_value M]

With ``--gms 0`` (the default) it trains exactly as Mammoth's ``er``; with ``--gms 1``
the stream rows of the joint stream + replay cross-entropy are masked to their own
task's classes (replayed rows too with ``--gms_on_buffer 1``).
"""

import torch
from models.er import Er

# Mammoth fills a missing --minibatch_size only for model modules that have a Buffer
from utils.buffer import Buffer  # noqa: F401

from replaymask.integrations.mammoth import GMSLoss, add_gms_args


class ErGms(Er):
    """Continual learning via Experience Replay, with GMS on the stream samples."""
    NAME = 'er_gms'
    COMPATIBILITY = ['class-il', 'task-il']  # GMS needs each class in one task

    @staticmethod
    def get_parser(parser):
        return add_gms_args(Er.get_parser(parser))

    def __init__(self, backbone, loss, args, transform, dataset=None):
        super().__init__(backbone, loss, args, transform, dataset=dataset)
        self.gms = GMSLoss(self)

    def observe(self, inputs, labels, not_aug_inputs, epoch=None):
        stream = inputs.shape[0]
        self.opt.zero_grad()
        if not self.buffer.is_empty():
            replay_inputs, replay_labels = self.buffer.get_data(
                self.args.minibatch_size, transform=self.transform, device=self.device)
            inputs = torch.cat((inputs, replay_inputs))
            labels = torch.cat((labels, replay_labels))
        loss = self.gms.stream_and_replay_loss(self.net(inputs), labels, stream=stream)
        loss.backward()
        self.opt.step()
        self.buffer.add_data(examples=not_aug_inputs, labels=labels[:stream])
        return loss.item()

"""The supervised contrastive loss (Khosla et al., NeurIPS 2020), used by X-DER."""

from __future__ import annotations

import torch


def supervised_contrastive_loss(features: torch.Tensor, labels: torch.Tensor,
                                temperature: float) -> torch.Tensor:
    """Per-sample SupCon loss of L2-normalised ``features`` (..., N, V, D): N samples with
    V views each (leading dimensions, e.g. one per classifier head, are batched).

    With the N*V views as anchors a, their positives P(a) (the other views of a sample
    of the same label, a's other views included) and A(a) every view but a::

        loss_a = -1/|P(a)| sum_{p in P(a)} log( exp(z_a.z_p/T) / sum_{b in A(a)} exp(z_a.z_b/T) )

    Returns (..., N): each sample's loss averaged over its V anchor views; the
    reference's ``reduction='sum'`` is the sum of this over N. Every anchor has a
    positive when V >= 2.
    """
    *batch, n, views, dim = features.shape
    flat = features.transpose(-3, -2).reshape(*batch, views * n, dim)  # view-major
    similarity = flat @ flat.transpose(-1, -2) / temperature
    anchor_labels = labels.repeat(views)
    positive = anchor_labels[:, None] == anchor_labels[None, :]
    not_self = ~torch.eye(views * n, dtype=torch.bool, device=features.device)
    positive &= not_self
    log_prob = similarity - torch.logsumexp(similarity.masked_fill(~not_self, float("-inf")),
                                            dim=-1, keepdim=True)
    mean_positive = (log_prob * positive).sum(-1) / positive.sum(-1)
    return -mean_positive.reshape(*batch, views, n).mean(-2)

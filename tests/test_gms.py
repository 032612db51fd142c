"""The GMS loss: its value, its gradient, and its argument checks."""

import math

import pytest
import torch
import torch.nn.functional as F

from replaymask import class_to_task_layout, gms_cross_entropy, live_classes
from replaymask.core.gms import same_task_table

K = 10
LAYOUT = class_to_task_layout([[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]])


def batch(n=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    logits = (3 * torch.randn(n, K, generator=generator)).requires_grad_()
    targets = torch.randint(0, K, (n,), generator=generator)
    return logits, targets, live_classes(targets, LAYOUT)


@pytest.mark.parametrize("mask_value", [float("-inf"), -3.0, 0.0, 2.5, "detach"])
def test_masked_logits_receive_no_gradient(mask_value):
    logits, targets, live = batch()
    gms_cross_entropy(logits, targets, live, mask_value).backward()
    assert torch.all(logits.grad[~live] == 0)
    assert torch.all((logits.grad.abs() * live).sum(1) > 0)


def test_hard_masking_equals_cross_entropy_over_the_live_logits_alone():
    logits, targets, live = batch()
    loss = gms_cross_entropy(logits, targets, live, float("-inf"), reduction="none")
    for n in range(len(targets)):
        classes = live[n].nonzero().squeeze(1)
        local_target = (classes == targets[n]).nonzero().item()
        expected = F.cross_entropy(logits[n, classes].unsqueeze(0), torch.tensor([local_target]))
        assert torch.allclose(loss[n], expected, atol=1e-6)


def test_detach_has_the_forward_value_of_plain_cross_entropy():
    logits, targets, live = batch()
    loss = gms_cross_entropy(logits, targets, live, "detach")
    assert torch.allclose(loss, F.cross_entropy(logits, targets), atol=1e-6)


def test_detach_gradient_on_live_logits_is_the_plain_softmax_gradient():
    logits, targets, live = batch()
    gms_cross_entropy(logits, targets, live, "detach", reduction="sum").backward()
    expected = torch.softmax(logits.detach(), 1) - F.one_hot(targets, K)
    assert torch.allclose(logits.grad, torch.where(live, expected, torch.zeros(())), atol=1e-6)


@pytest.mark.parametrize("m", [float("-inf"), -2.0, 0.0, 1.5])
def test_gradient_matches_the_analytic_form_with_masked_mass_in_the_denominator(m):
    logits, targets, live = batch()
    gms_cross_entropy(logits, targets, live, m, reduction="sum").backward()
    z = logits.detach().double()
    live_count = live.sum(1, keepdim=True)
    masked_mass = 0.0 if m == float("-inf") else (K - live_count) * math.exp(m)
    denominator = (z.exp() * live).sum(1, keepdim=True) + masked_mass
    p = z.exp() / denominator
    expected = torch.where(live, p - F.one_hot(targets, K), torch.zeros((), dtype=z.dtype))
    assert torch.allclose(logits.grad.double(), expected, atol=1e-5)


def test_finite_mask_value_value_matches_the_formula():
    logits, targets, live = batch()
    m = 0.7
    loss = gms_cross_entropy(logits, targets, live, m, reduction="none")
    z = logits.detach().double()
    denominator = (z.exp() * live).sum(1) + (K - live.sum(1)) * math.exp(m)
    expected = -(z.gather(1, targets[:, None]).squeeze(1).exp() / denominator).log()
    assert torch.allclose(loss.double(), expected, atol=1e-5)


def test_all_live_rows_reduce_to_plain_cross_entropy():
    logits, targets, _ = batch()
    live = torch.ones(1, K, dtype=torch.bool)  # broadcast over the batch
    for mask_value in (float("-inf"), 0.0, "detach"):
        loss = gms_cross_entropy(logits, targets, live, mask_value)
        assert torch.allclose(loss, F.cross_entropy(logits, targets), atol=1e-6)


def test_reductions_agree():
    logits, targets, live = batch()
    per_sample = gms_cross_entropy(logits, targets, live, 0.0, reduction="none")
    assert per_sample.shape == (len(targets),)
    assert torch.allclose(gms_cross_entropy(logits, targets, live, 0.0), per_sample.mean())
    assert torch.allclose(gms_cross_entropy(logits, targets, live, 0.0, reduction="sum"),
                          per_sample.sum())


def test_stable_for_huge_logits():
    logits = torch.tensor([[1e4, -1e4, 3e4, 2e4]], requires_grad=True)
    live = torch.tensor([[False, False, True, True]])
    loss = gms_cross_entropy(logits, torch.tensor([3]), live, 5.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert loss.item() == pytest.approx(1e4, rel=1e-4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("mask_value", [float("-inf"), 0.0, "detach"])
def test_works_in_low_precision_autocast(dtype, mask_value):
    logits, targets, live = batch()
    layer = torch.nn.Linear(K, K)
    with torch.autocast("cpu", dtype=dtype):
        out = layer(logits.detach())
        loss = gms_cross_entropy(out, targets, live, mask_value)
    loss.backward()
    assert torch.isfinite(loss)
    reference = gms_cross_entropy(layer(logits.detach()).float(), targets, live, mask_value)
    assert loss.item() == pytest.approx(reference.item(), rel=0.05, abs=0.05)


def test_live_classes_marks_each_samples_own_task():
    live = live_classes(torch.tensor([0, 3, 9]), LAYOUT)
    assert live.tolist()[0] == [True, True] + [False] * 8
    assert live[1].nonzero().squeeze(1).tolist() == [2, 3]
    assert live[2].nonzero().squeeze(1).tolist() == [8, 9]


def test_the_same_task_table_gathers_what_live_classes_computes():
    layout = class_to_task_layout([[3, 0], [1, 4], [2]], num_classes=6)  # class 5: no task
    targets = torch.tensor([0, 3, 1, 4, 2, 2])
    table = same_task_table(layout)
    assert table.shape == (6, 6)
    assert torch.equal(table[targets], live_classes(targets, layout))
    assert table[0].tolist() == [True, False, False, True, False, False]


def test_class_to_task_layout_accepts_any_grouping_and_rejects_overlap():
    assert class_to_task_layout([[3, 0], [1, 2]]).tolist() == [0, 1, 1, 0]
    assert class_to_task_layout([[0]], num_classes=3).tolist() == [0, -1, -1]
    with pytest.raises(ValueError, match="more than one task"):
        class_to_task_layout([[0, 1], [1, 2]])


@pytest.mark.parametrize("bad, message", [
    (dict(mask_value=float("nan")), "NaN"),
    (dict(mask_value=float("inf")), r"\+inf"),
    (dict(mask_value="zero"), "'detach'"),
    (dict(reduction="max"), "reduction"),
])
def test_bad_options_raise_a_clear_error(bad, message):
    logits, targets, live = batch()
    with pytest.raises(ValueError, match=message):
        gms_cross_entropy(logits, targets, live, **bad)


def test_a_target_that_is_not_live_is_rejected():
    logits, targets, live = batch()
    with pytest.raises(ValueError, match="live"):
        gms_cross_entropy(logits, targets, ~live)


def test_shape_mismatches_are_rejected():
    logits, targets, live = batch()
    with pytest.raises(ValueError, match="does not broadcast"):
        gms_cross_entropy(logits, targets, live[:, :5])
    with pytest.raises(ValueError, match="targets must have shape"):
        gms_cross_entropy(logits, targets[:3], live)
    with pytest.raises(ValueError, match="bool"):
        gms_cross_entropy(logits, targets, live.float())
    with pytest.raises(ValueError, match="2-D"):
        gms_cross_entropy(logits[0], targets, live)


def test_the_gms_rule_masks_stream_rows_and_replayed_rows_only_on_the_buffer():
    """One rule for every method and both integrations: with GMS, a stream row keeps only
    its own task's classes; a replayed row keeps all of them unless on_buffer."""
    from replaymask.core.gms import GMSRule

    table = same_task_table(torch.tensor([0, 0, 1, 1]))
    labels = torch.tensor([2, 3, 0, 1])  # two stream rows (task 1), then two replayed (task 0)
    assert GMSRule().live(labels, table, replayed=2) is None  # GMS off: the plain softmax
    rule = GMSRule(True)
    assert rule.live(labels, table, replayed=True) is None  # replayed rows stay plain
    assert rule.live(labels, table).tolist() == table[labels].tolist()
    mixed = rule.live(labels, table, replayed=2)
    assert mixed[:2].tolist() == [[False, False, True, True]] * 2 and mixed[2:].all()
    per_row = rule.live(labels, table, replayed=torch.tensor([False, False, True, True]))
    assert torch.equal(per_row, mixed)
    on_buffer = GMSRule(True, 0.0, on_buffer=True)
    assert torch.equal(on_buffer.live(labels, table, replayed=2), table[labels])
    assert on_buffer.masks(replayed=True) and not GMSRule(True).masks(replayed=True)

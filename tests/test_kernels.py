"""Tests for xrobust.kernels: the eager reference against hand-computed values, then every backend vs eager."""

import torch

from xrobust.kernels import perturbation_init, perturbation_step


def test_eager_example_l2_hand_computed():
    delta = torch.zeros(1, 2, 2)
    grad = torch.tensor([[[3.0, 4.0], [0.0, 0.0]]])
    mask = torch.tensor([[1, 1]])
    out = perturbation_step(delta, grad, mask, step_size=1.0, max_norm=0.0, backend="eager")
    torch.testing.assert_close(out, torch.tensor([[[0.6, 0.8], [0.0, 0.0]]]))


def test_eager_init_padding_zero():
    mask = torch.tensor([[1, 0]])
    out = perturbation_init(torch.empty(1, 2, 3), mask, init_mag=1.0, backend="eager")
    assert torch.all(out[0, 1] == 0)

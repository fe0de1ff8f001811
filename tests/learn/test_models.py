import numpy as np
import pytest
import torch

from kernelnet.learn.models import DoubleFilter, SingleFilter, apply_target, build_model
from kernelnet.runtime.reference import apply_kernels


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 1, 1, 7), (2, 1, 5, 1), (1, 1, 31, 17)])
@pytest.mark.parametrize("model", ["single", "double"])
@pytest.mark.parametrize("padding", ["zeros", "replicate"])
def test_any_size_same_shape(shape, model, padding):
    m = build_model(model, 3, padding=padding)
    assert m(torch.rand(shape)).shape == shape


@pytest.mark.parametrize("padding", ["zeros", "reflect", "replicate"])
@pytest.mark.parametrize("model,normalize", [("single", False), ("single", True), ("double", False)])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_forward_matches_numpy_reference(model, normalize, padding, k, rng):
    torch.manual_seed(0)
    m = build_model(model, k, bias=True, normalize=normalize, padding=padding)
    x = rng.random((2, 1, 9, 11)).astype(np.float32)
    with torch.no_grad():
        y = m(torch.from_numpy(x)).numpy()
    ref = apply_kernels(x[:, 0], m.kernels.double().numpy(), m.conv.bias.detach().double().numpy(),
                        normalize=normalize, padding=padding)
    assert np.allclose(y[:, 0], ref, atol=1e-5)


def test_double_gradient_finite_on_flat_images():
    m = DoubleFilter(3, bias=False)
    x = torch.zeros(2, 1, 8, 8)  # a = b = 0 everywhere: sqrt's gradient would be infinite
    loss = (m(x) - 1.0).pow(2).mean()
    loss.backward()
    assert torch.isfinite(m.conv.weight.grad).all()
    x = torch.full((1, 1, 8, 8), 0.5, requires_grad=True)  # constant image, interior a = b = 0
    m(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_abs_gradient_finite_at_zero():
    m = SingleFilter(3, bias=False, normalize=True)
    m(torch.zeros(1, 1, 5, 5)).sum().backward()
    assert torch.isfinite(m.conv.weight.grad).all()


def test_no_norm_is_raw_and_abs_is_abs():
    raw, ab = SingleFilter(3, normalize=False), SingleFilter(3, normalize=True)
    ab.load_state_dict(raw.state_dict())
    x = torch.rand(1, 1, 6, 6)
    assert torch.allclose(ab(x), raw(x).abs())
    assert (raw(x) < 0).any()


def test_apply_target_double_uses_transpose():
    k = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=torch.float64)
    x = torch.rand(1, 1, 10, 10, dtype=torch.float64)
    y = apply_target(x, k, "double", False, "zeros")
    ref = apply_kernels(x[:, 0].numpy(), np.stack([k.numpy(), k.numpy().T]))
    assert np.allclose(y[:, 0].numpy(), ref)


@pytest.mark.parametrize("bad", [dict(kernel_size=2), dict(kernel_size=0), dict(padding="circular")])
def test_invalid_model_arguments(bad):
    with pytest.raises(ValueError):
        SingleFilter(**bad)

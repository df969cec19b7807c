"""The from-scratch NumPy network: finite-difference gradient checks, optimiser and scheduler arithmetic."""

from __future__ import annotations

import math

import numpy as np
import pytest

from latentlab.algorithms import numpy_nn as nn


def _numeric_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        plus = f()
        x[i] = old - eps
        minus = f()
        x[i] = old
        grad[i] = (plus - minus) / (2 * eps)
    return grad


def _rel_error(a, b) -> float:
    return float(np.abs(a - b).max() / max(1e-12, np.abs(a).max() + np.abs(b).max()))


@pytest.mark.parametrize("layer_cls", [nn.ReLU, nn.Sigmoid, nn.Tanh])
def test_activation_gradients(layer_cls):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 5))
    x[np.abs(x) < 1e-3] = 0.5  # keep away from ReLU's kink, where the derivative is undefined
    upstream = rng.standard_normal((4, 5))
    layer = layer_cls()
    layer.forward(x)
    analytic = layer.backward(upstream)
    numeric = _numeric_grad(lambda: float((layer.forward(x) * upstream).sum()), x)
    assert _rel_error(analytic, numeric) < 1e-5


def test_linear_gradients_for_input_weight_and_bias():
    rng = np.random.default_rng(1)
    layer = nn.Linear(5, 3, rng, dtype=np.float64)
    x = rng.standard_normal((4, 5))
    upstream = rng.standard_normal((4, 3))
    layer.forward(x)
    grad_x = layer.backward(upstream)
    loss = lambda: float((layer.forward(x) * upstream).sum())  # noqa: E731
    assert _rel_error(grad_x, _numeric_grad(loss, x)) < 1e-5
    assert _rel_error(layer.W.grad, _numeric_grad(loss, layer.W.value)) < 1e-5
    assert _rel_error(layer.b.grad, _numeric_grad(loss, layer.b.value)) < 1e-5


def test_softmax_cross_entropy_value_and_gradient():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((6, 4)) * 3
    labels = np.array([0, 3, 1, 2, 3, 0])
    loss, grad = nn.softmax_cross_entropy(logits, labels)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert math.isclose(loss, -np.log(probs[np.arange(6), labels]).mean(), rel_tol=1e-12)
    numeric = _numeric_grad(lambda: nn.softmax_cross_entropy(logits, labels)[0], logits)
    assert _rel_error(grad, numeric) < 1e-5
    big, _ = nn.softmax_cross_entropy(np.array([[1000.0, -1000.0]]), np.array([1]))
    assert math.isfinite(big) and math.isclose(big, 2000.0)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_whole_network_gradient(activation):
    rng = np.random.default_rng(3)
    net = nn.Net.mlp([6, 5, 4, 3], activation, seed=3, dtype=np.float64)
    x = rng.standard_normal((7, 6))
    labels = rng.integers(0, 3, 7)
    net.zero_grad()
    _, grad = nn.softmax_cross_entropy(net.forward(x), labels)
    net.backward(grad)
    for p in net.parameters():
        numeric = _numeric_grad(lambda: nn.softmax_cross_entropy(net.forward(x), labels)[0], p.value)
        assert _rel_error(p.grad, numeric) < 1e-5


def test_sgd_momentum_and_weight_decay_arithmetic():
    p = nn.Parameter(np.array([1.0, -2.0]))
    opt = nn.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01)
    p.grad[:] = [0.5, 0.5]
    opt.step()  # v = g + λw = [0.51, 0.48]; w -= 0.1 v
    np.testing.assert_allclose(p.value, [1.0 - 0.051, -2.0 - 0.048])
    opt.step()  # same grad; v = 0.9 v + g + λw(new)
    v = 0.9 * np.array([0.51, 0.48]) + np.array([0.5, 0.5]) + 0.01 * np.array([0.949, -2.048])
    np.testing.assert_allclose(p.value, np.array([0.949, -2.048]) - 0.1 * v)
    plain = nn.Parameter(np.array([1.0]))
    plain.grad[:] = 2.0
    nn.SGD([plain], lr=0.5).step()  # no momentum, no decay: w − lr·g
    np.testing.assert_allclose(plain.value, [0.0])


def test_schedulers_follow_their_formulas():
    opt = nn.SGD([nn.Parameter(np.zeros(1))], lr=0.2)
    exp = nn.ExponentialLR(opt, k=0.5)
    for t in range(1, 4):
        exp.step()
        assert math.isclose(opt.lr, 0.2 * math.exp(-0.5 * t))
    opt2 = nn.SGD([nn.Parameter(np.zeros(1))], lr=0.2)
    step = nn.StepLR(opt2, k=0.5)
    for t in range(1, 4):
        step.step()
        assert math.isclose(opt2.lr, 0.2 * 0.5 ** t)


def test_hooks_save_and_load(tmp_path):
    net = nn.Net.mlp([784, 16, 8, 10], seed=0)
    assert list(net.layers) == ["fc1", "relu1", "fc2", "relu2", "logits"]
    seen = {}
    handle = net.register_forward_hook("fc2", lambda layer, inp, out: seen.setdefault("fc2", out.copy()))
    x = np.random.default_rng(0).standard_normal((3, 784)).astype(np.float32)
    out = net.forward(x)
    assert seen["fc2"].shape == (3, 8)
    handle.remove()
    seen.clear()
    net.forward(x)
    assert not seen
    net.save(tmp_path / "m.npz")
    again = nn.Net.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(again.forward(x), out)
    with pytest.raises(KeyError, match="no layer 'conv9'"):
        net.register_forward_hook("conv9", print)

"""Seed 002/004 autograd idioms: the printed values, from torch and from jaxnet."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxnet import autograd


def test_dot_sum_detach_seed002():
    x = jnp.arange(4.0)
    tx = torch.arange(4.0, requires_grad=True)
    (2 * torch.dot(tx, tx)).backward()
    ours = jax.grad(lambda x: 2 * jnp.dot(x, x))(x)
    np.testing.assert_array_equal(ours, tx.grad.numpy())
    np.testing.assert_array_equal(ours, [0.0, 4.0, 8.0, 12.0])

    tx.grad.zero_()
    tx.sum().backward()
    np.testing.assert_array_equal(jax.grad(jnp.sum)(x), tx.grad.numpy())
    np.testing.assert_array_equal(jax.grad(jnp.sum)(x), [1.0, 1.0, 1.0, 1.0])

    tx.grad.zero_()
    u_t = (tx * tx).detach()
    (u_t * tx).sum().backward()
    ours = jax.grad(lambda x: (autograd.detach(x * x) * x).sum())(x)
    np.testing.assert_array_equal(ours, tx.grad.numpy())
    np.testing.assert_array_equal(ours, [0.0, 1.0, 4.0, 9.0])

    tx.grad.zero_()
    (tx * tx).sum().backward()
    np.testing.assert_array_equal(jax.grad(lambda x: (x * x).sum())(x), [0.0, 2.0, 4.0, 6.0])
    np.testing.assert_array_equal(tx.grad.numpy(), [0.0, 2.0, 4.0, 6.0])


@pytest.mark.parametrize(
    ("f", "x0", "grad"), [(lambda x: x**3, 5.0, 75.0), (lambda x: 1 / x, 2.0, -0.25)]
)
def test_accumulation_without_zero_grad_seed004(f, x0, grad):
    tx = torch.tensor(x0, requires_grad=True)
    f(tx).backward()
    first = tx.grad.item()
    f(tx).backward()  # no zero_grad: torch adds
    second = tx.grad.item()
    tx.grad.zero_()
    f(tx).backward()
    third = tx.grad.item()
    assert (first, second, third) == (grad, 2 * grad, grad)

    grad_fn = lambda p, _: jax.grad(f)(p)  # noqa: E731
    once = autograd.accumulate_grads(grad_fn, jnp.float32(x0), jnp.zeros(1))
    twice = autograd.accumulate_grads(grad_fn, jnp.float32(x0), jnp.zeros(2))
    assert (float(once), float(twice)) == (first, second)


def test_accumulated_micro_batches_equal_torch(rng):
    w0 = rng.standard_normal(3)
    xs, ys = rng.standard_normal((4, 8, 3)), rng.standard_normal((4, 8))
    tw = torch.tensor(w0, requires_grad=True)
    for x, y in zip(xs, ys, strict=True):
        ((torch.tensor(x) @ tw - torch.tensor(y)) ** 2).mean().backward()
    grad_fn = jax.grad(lambda w, b: jnp.mean((b[0] @ w - b[1]) ** 2))
    total = autograd.accumulate_grads(grad_fn, jnp.asarray(w0), (xs, ys))
    np.testing.assert_allclose(total, tw.grad.numpy(), rtol=1e-12)


def test_retain_graph_is_a_reusable_vjp():
    tx = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    ty = (tx**2).sum()
    ty.backward(retain_graph=True)
    ty.backward()
    y, pullback = jax.vjp(lambda x: (x**2).sum(), jnp.array([1.0, 2.0]))
    (g1,), (g2,) = pullback(jnp.ones_like(y)), pullback(jnp.ones_like(y))
    np.testing.assert_array_equal(g1 + g2, tx.grad.numpy())


def test_autograd_grad_wrt_chosen_argument():
    tw, tb = torch.tensor(2.0, requires_grad=True), torch.tensor(1.0, requires_grad=True)
    loss = (tw * 3.0 + tb - 10.0) ** 2
    (gw,) = torch.autograd.grad(loss, [tw])
    ours = jax.grad(lambda w, b: (w * 3.0 + b - 10.0) ** 2, argnums=0)(2.0, 1.0)
    assert float(ours) == gw.item() == -18.0


def test_finite_difference_grad_equals_the_analytic_gradient(rng):
    """d/dx sum(sin(x) x^2) = cos(x) x^2 + 2 x sin(x), and torch's autograd agrees."""
    x = rng.standard_normal((2, 3))
    numeric = autograd.finite_difference_grad(lambda x: jnp.sum(jnp.sin(x) * x**2), x)
    tx = torch.from_numpy(x).requires_grad_()
    (torch.sin(tx) * tx**2).sum().backward()
    np.testing.assert_allclose(numeric, np.cos(x) * x**2 + 2 * x * np.sin(x), rtol=1e-8)
    np.testing.assert_allclose(numeric, tx.grad.numpy(), rtol=1e-8)


def test_check_grad_accepts_and_rejects_what_torch_gradcheck_does(rng):
    """The same true gradient and the same wrong one, against torch.autograd.gradcheck."""
    from torch.autograd.gradcheck import GradcheckError

    x = rng.standard_normal(5)
    assert autograd.check_grad(lambda x: jnp.sum(jnp.sin(x) * x**2), x) < 1e-7
    tx = torch.from_numpy(x).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: (torch.sin(t) * t**2).sum(), (tx,))

    @jax.custom_vjp
    def wrong(x):
        return jnp.sum(x**2)

    wrong.defvjp(lambda x: (wrong(x), x), lambda x, g: (g * 3 * x,))

    class WrongSquareSum(torch.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            ctx.save_for_backward(t)
            return (t**2).sum()

        @staticmethod
        def backward(ctx, g):
            (t,) = ctx.saved_tensors
            return g * 3 * t

    with pytest.raises(ValueError, match="autodiff and finite differences disagree at index"):
        autograd.check_grad(wrong, x)
    with pytest.raises(GradcheckError):
        torch.autograd.gradcheck(WrongSquareSum.apply, (tx,))

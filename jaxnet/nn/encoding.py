"""NeRF-style positional (frequency) encoding, NeRF's closure-list embedder in one broadcast.

PyTorch original (no ``torch.nn`` class; NeRF's ``Embedder``)::

    embed_fns = [lambda x: x] if include_input else []
    freq_bands = 2.0 ** torch.linspace(0, max_freq_log2, num_freqs)      # log sampling
    #          = torch.linspace(1, 2.0 ** max_freq_log2, num_freqs)      # linear sampling
    for freq in freq_bands:
        for p_fn in (torch.sin, torch.cos):
            embed_fns.append(lambda x, p_fn=p_fn, freq=freq: p_fn(x * freq))
    out = torch.cat([fn(x) for fn in embed_fns], -1)

jaxnet computes all bands in one broadcast instead of a list of closures; the output
order is the same: ``[x, sin(f0 x), cos(f0 x), sin(f1 x), cos(f1 x), ...]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxnet._checks import check_non_negative_int, check_positive_int
from jaxnet.nn.module import Module, Scope


class PositionalEncoding(Module):
    """``x -> [x, sin(f_k x), cos(f_k x) for k < num_freqs]`` along the last axis.

    PyTorch equivalent: none in ``torch.nn``; NeRF's ``Embedder`` (``get_embedder``), the
    closure list shown in this module's docstring.

    ``in_features`` is the size of the last input axis (3 for NeRF positions); the output
    has ``out_features = in_features * (include_input + 2 * num_freqs)``. ``max_freq_log2``
    defaults to ``num_freqs - 1`` (NeRF's ``multires - 1``).
    """

    def __init__(
        self,
        in_features: int,
        num_freqs: int,
        max_freq_log2: float | None = None,
        include_input: bool = True,
        log_sampling: bool = True,
        dtype=jnp.float32,
    ):
        check_non_negative_int("PositionalEncoding", num_freqs=num_freqs)
        check_positive_int("PositionalEncoding", in_features=in_features)
        self.in_features = in_features
        self.num_freqs = num_freqs
        self.max_freq_log2 = num_freqs - 1 if max_freq_log2 is None else max_freq_log2
        self.include_input = include_input
        self.log_sampling = log_sampling
        self.dtype = dtype

    @property
    def out_features(self) -> int:
        return self.in_features * (int(self.include_input) + 2 * self.num_freqs)

    def frequencies(self) -> jax.Array:
        """The frequency bands ``f_k`` (``freq_bands`` of the original)."""
        if self.log_sampling:
            return 2.0 ** jnp.linspace(0.0, self.max_freq_log2, self.num_freqs, dtype=self.dtype)
        return jnp.linspace(1.0, 2.0**self.max_freq_log2, self.num_freqs, dtype=self.dtype)

    def forward(self, scope: Scope, x: jax.Array) -> jax.Array:
        if jnp.ndim(x) < 1 or jnp.shape(x)[-1] != self.in_features:
            raise ValueError(
                f"PositionalEncoding({self.in_features}, num_freqs={self.num_freqs}) expected "
                f"input [..., {self.in_features}], got shape {tuple(jnp.shape(x))}"
            )
        freqs = self.frequencies().reshape((1,) * (jnp.ndim(x) - 1) + (-1, 1))  # (1.., F, 1)
        scaled = x[..., None, :] * freqs  # (..., F, D)
        bands = jnp.stack([jnp.sin(scaled), jnp.cos(scaled)], axis=-2)  # (..., F, 2, D)
        bands = bands.reshape(*jnp.shape(x)[:-1], -1)  # (..., F * 2 * D)
        return jnp.concatenate([x, bands], axis=-1) if self.include_input else bands

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, num_freqs={self.num_freqs}, "
            f"max_freq_log2={self.max_freq_log2}, include_input={self.include_input}, "
            f"log_sampling={self.log_sampling}"
        )

"""PyTorch originals shared by several test modules (not collected: no test_ prefix)."""

import torch


def closure_embedder(
    num_freqs, max_freq_log2, include_input=True, log_sampling=True, dtype=torch.float64
):
    """NeRF's Embedder: a list of lambdas with default arguments capturing p_fn and freq."""
    embed_fns = [lambda x: x] if include_input else []
    if log_sampling:
        freq_bands = 2.0 ** torch.linspace(0.0, max_freq_log2, steps=num_freqs, dtype=dtype)
    else:
        freq_bands = torch.linspace(2.0**0.0, 2.0**max_freq_log2, steps=num_freqs, dtype=dtype)
    for freq in freq_bands:
        for p_fn in (torch.sin, torch.cos):
            embed_fns.append(lambda x, p_fn=p_fn, freq=freq: p_fn(x * freq))
    return lambda x: torch.cat([fn(x) for fn in embed_fns], -1)

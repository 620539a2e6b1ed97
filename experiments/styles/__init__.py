"""The same small programs written three ways: PyTorch, Flax NNX and jaxnet.

Each style module defines one function per section, with the same name in every module
(``mlp_block``, ``parameter_tying``, ``custom_layers``, ``training_loop``,
``gradient_accumulation``, ``lr_schedule``, ``mnist_step``, ``dropout``, ``batchnorm``);
``experiments.compare_styles`` runs them, checks that they agree, times them and shows
their source. The protocol:

* ``torch_style.<section>(*data) -> (outputs, step, weights)``: the PyTorch program builds
  its modules with torch's default initialisation; ``weights`` is its initial
  ``state_dict`` as NumPy arrays, the start the other two styles share.
* ``nnx_style.<section>(weights, *data)`` and ``jaxnet_style.<section>(weights, *data)``
  return ``(outputs, step)``.

``outputs`` maps names to arrays or lists of numbers (nested dicts allowed: their dotted
paths are the names), with the same names in every style. ``step`` is a callable without
arguments that repeats the section's unit of work (a forward pass, one training step):
the thing timed. ``jaxnet_style.ensemble`` is an extra demonstration without
counterparts: ``jax.vmap`` over a model's ``init`` and ``apply``.
"""

"""Interoperation with PyTorch: convert a torch module to jaxnet and back, compare the two
layer by layer, and explain state-dict key mismatches.

torch is optional: it is imported inside these functions, never when jaxnet is imported.
"""

from jaxnet.interop._compare import Comparison as Comparison
from jaxnet.interop._compare import LayerDiff as LayerDiff
from jaxnet.interop._compare import compare as compare
from jaxnet.interop._from_torch import ConversionError as ConversionError
from jaxnet.interop._from_torch import from_torch as from_torch
from jaxnet.interop._to_torch import to_torch as to_torch
from jaxnet.interop.keys import key_mapping_hint as key_mapping_hint

# SPDX-License-Identifier: Apache-2.0
"""libattn from Python: scaled dot-product and multi-head attention on any
OpenCL device or natively on the CPU.

    import numpy as np, libattn
    q = k = v = np.random.rand(1, 8, 128, 64).astype(np.float32)
    out = libattn.scaled_dot_product_attention(q, k, v, is_causal=True)

See README.md (the Python section) and include/attn/attn.h."""

from ._context import Context, DeviceInfo, devices, kernel_names
from ._errors import (BuildFailedError, DeviceError, InvalidArgumentError,
                      LibattnError, LibattnIOError, NoDeviceError,
                      OutOfMemoryError, UnsupportedError)
from ._ffi import ffi as _ffi
from ._ffi import lib as _lib
from ._mha import MultiheadAttention
from ._sdpa import (scaled_dot_product_attention,
                    scaled_dot_product_attention_backward)
from ._varlen import varlen_attention, varlen_attention_backward

__version__ = _ffi.string(_lib.attn_version()).decode()

__all__ = [
    "BuildFailedError", "Context", "DeviceError", "DeviceInfo",
    "InvalidArgumentError", "LibattnError", "LibattnIOError",
    "MultiheadAttention", "NoDeviceError", "OutOfMemoryError",
    "UnsupportedError", "devices", "kernel_names",
    "scaled_dot_product_attention", "scaled_dot_product_attention_backward",
    "varlen_attention", "varlen_attention_backward", "__version__",
]

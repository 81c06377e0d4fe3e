# SPDX-License-Identifier: Apache-2.0
"""Arrays in and out: numpy arrays as they are, any DLPack-capable CPU
tensor (torch, jax, cupy on the host, ...) viewed through numpy without a
copy, and results handed back as the caller's kind."""

import sys

import numpy as np

_DTYPES = {np.dtype(np.float32): 0, np.dtype(np.float16): 1}


class Kind:
    """Where an input came from, so that results go back the same way."""

    def __init__(self, module=None):
        self.module = module

    def back(self, arr):
        if self.module is None:
            return arr
        return self.module(arr)


def _dlpack_module(x):
    """A from_dlpack function for x's library, or None (numpy)."""
    top = type(x).__module__.split(".")[0]
    if top == "torch":
        return sys.modules["torch"].from_dlpack
    if top in ("jax", "jaxlib"):
        import jax.numpy as jnp  # noqa: PLC0415 (only when jax is in use)
        return jnp.from_dlpack
    mod = sys.modules.get(top)
    fn = getattr(mod, "from_dlpack", None) if mod is not None else None
    return fn


def as_numpy(x, name):
    """(numpy view of x, Kind).  Raises TypeError for what cannot be read
    as a host array."""
    if isinstance(x, np.ndarray):
        return x, Kind()
    if hasattr(x, "__dlpack__"):
        try:
            arr = np.from_dlpack(x)
        except (BufferError, TypeError, RuntimeError, ValueError) as e:
            dtype = getattr(x, "dtype", None)
            if dtype is not None and "bfloat16" in str(dtype):
                raise TypeError(
                    "%s: bfloat16 is not supported by libattn yet; use "
                    "float32 or float16" % name) from None
            raise TypeError(
                "%s: cannot read this %s as a host array through DLPack "
                "(%s); tensors must be on the CPU and not require grad "
                "(.detach())" % (name, type(x).__name__, e)) from None
        return arr, Kind(_dlpack_module(x))
    if isinstance(x, (list, tuple, float, int)):
        return np.asarray(x, dtype=np.float32), Kind()
    raise TypeError("%s: expected a numpy array or a DLPack tensor, got %s" %
                    (name, type(x).__name__))


def dtype_code(arr, name):
    code = _DTYPES.get(arr.dtype)
    if code is None:
        raise TypeError("%s: dtype %s is not supported (float32 or float16)"
                        % (name, arr.dtype))
    return code


def contiguous(arr):
    """C-contiguous: arr itself when it is, else a copy."""
    return np.ascontiguousarray(arr)

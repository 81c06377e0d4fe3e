# SPDX-License-Identifier: Apache-2.0
"""Arrays in and out: numpy arrays as they are, any DLPack-capable CPU
tensor (torch, jax, cupy on the host, ...) viewed through numpy without a
copy, and results handed back as the caller's kind.  numpy has no bfloat16:
torch.bfloat16 tensors and ml_dtypes' bfloat16 arrays are viewed as BF16,
their 16 bits in a one-field structured dtype (no copy either)."""

import sys

import numpy as np

# bfloat16 bits as numpy holds them here (ATTN_BF16).
BF16 = np.dtype([("bfloat16", "<u2")])

_DTYPES = {np.dtype(np.float32): 0, np.dtype(np.float16): 1, BF16: 2}


class Kind:
    """Where an input came from, so that results go back the same way;
    bf16 turns a BF16 result into the caller's bfloat16 type."""

    def __init__(self, module=None, bf16=None):
        self.module = module
        self.bf16 = bf16

    def back(self, arr):
        if arr.dtype == BF16 and self.bf16 is not None:
            return self.bf16(arr)
        if self.module is None:
            return arr
        return self.module(arr)


def _torch_bf16(x):
    """(BF16 view of a torch.bfloat16 CPU tensor, Kind), or None."""
    torch = sys.modules.get("torch")
    if torch is None or getattr(x, "dtype", None) is not torch.bfloat16:
        return None
    bits = np.from_dlpack(x.view(torch.int16))
    return bits.view(BF16), Kind(
        torch.from_dlpack,
        lambda a: torch.from_dlpack(a.view(np.int16)).view(torch.bfloat16))


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


def as_numpy(x, name, ints=False):
    """(numpy view of x, Kind).  Raises TypeError for what cannot be read
    as a host array.  A Python number or (nested) list or tuple is read as
    float32, except booleans, which stay bool (a keep mask), and, with
    ints, anything, which keeps numpy's type (offsets, checked by the
    caller)."""
    if isinstance(x, np.ndarray):
        if x.dtype.name == "bfloat16":  # ml_dtypes
            return x.view(BF16), Kind(bf16=lambda a, dt=x.dtype: a.view(dt))
        return x, Kind()
    if hasattr(x, "__dlpack__"):
        try:
            bf16 = _torch_bf16(x)
            if bf16 is not None:
                return bf16
            arr = np.from_dlpack(x)
        except (BufferError, TypeError, RuntimeError, ValueError) as e:
            raise TypeError(
                "%s: cannot read this %s as a host array through DLPack "
                "(%s); tensors must be on the CPU and not require grad "
                "(.detach())" % (name, type(x).__name__, e)) from None
        return arr, Kind(_dlpack_module(x))
    if isinstance(x, (list, tuple, float, int)):
        a = np.asarray(x)
        if a.dtype == np.bool_ or ints:
            return a, Kind()
        return a.astype(np.float32), Kind()
    raise TypeError("%s: expected a numpy array or a DLPack tensor, got %s" %
                    (name, type(x).__name__))


def dtype_code(arr, name):
    code = _DTYPES.get(arr.dtype)
    if code is None:
        raise TypeError("%s: dtype %s is not supported (float32, float16 "
                        "or bfloat16)" % (name, arr.dtype))
    return code


def contiguous(arr):
    """C-contiguous: arr itself when it is, else a copy."""
    return np.ascontiguousarray(arr)

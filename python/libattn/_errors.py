# SPDX-License-Identifier: Apache-2.0
"""Exceptions: one class per attn_status, each carrying the library's
sentence about the failure."""

import functools

from ._ffi import ffi, lib


class LibattnError(RuntimeError):
    """A libattn call failed: status is the attn_status value, status_name
    its name ("ATTN_ERR_..."), and the message the library's sentence."""

    def __init__(self, status, message):
        self.status = int(status)
        self.status_name = ffi.string(lib.attn_status_string(status)).decode()
        super().__init__(message if message else self.status_name)


class InvalidArgumentError(LibattnError, ValueError):
    """ATTN_ERR_INVALID_ARGUMENT: a pointer, size, enum or option is wrong."""


class OutOfMemoryError(LibattnError, MemoryError):
    """ATTN_ERR_OUT_OF_MEMORY: an allocation failed or sizes overflow."""


class NoDeviceError(LibattnError):
    """ATTN_ERR_NO_DEVICE: the requested device does not exist."""


class BuildFailedError(LibattnError):
    """ATTN_ERR_BUILD_FAILED: a kernel program failed to build."""


class DeviceError(LibattnError):
    """ATTN_ERR_DEVICE: a device call failed (launch, transfer)."""


class UnsupportedError(LibattnError, NotImplementedError):
    """ATTN_ERR_UNSUPPORTED: a valid request this build cannot serve."""


class LibattnIOError(LibattnError, OSError):
    """ATTN_ERR_IO: a file could not be read or written."""


_BY_STATUS = {
    lib.ATTN_ERR_INVALID_ARGUMENT: InvalidArgumentError,
    lib.ATTN_ERR_OUT_OF_MEMORY: OutOfMemoryError,
    lib.ATTN_ERR_NO_DEVICE: NoDeviceError,
    lib.ATTN_ERR_BUILD_FAILED: BuildFailedError,
    lib.ATTN_ERR_DEVICE: DeviceError,
    lib.ATTN_ERR_UNSUPPORTED: UnsupportedError,
    lib.ATTN_ERR_IO: LibattnIOError,
}


def _text(ptr):
    return ffi.string(ptr).decode("utf-8", "replace") if ptr != ffi.NULL else ""


def check(status, ctx=None):
    """Raises the exception of status (nothing for ATTN_OK) with the
    calling thread's last error, or else ctx's."""
    if status == lib.ATTN_OK:
        return
    message = _text(lib.attn_last_error())
    if not message and ctx is not None:
        message = _text(lib.attn_context_last_error(ctx))
    raise _BY_STATUS.get(status, LibattnError)(status, message)


def c_ints(fn):
    """fn with an integer too large for the C interface (a size, a
    position, a count: C ints) raised as the ValueError the functions
    document, not as cffi's OverflowError."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except OverflowError as exc:
            raise ValueError("%s: a value does not fit the library's C "
                             "integers (%s)" % (fn.__name__, exc)) from None
    return wrapper

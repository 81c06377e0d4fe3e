# SPDX-License-Identifier: Apache-2.0
"""Devices and contexts: libattn.devices() and libattn.Context."""

import dataclasses
import threading

from ._errors import InvalidArgumentError, c_ints, check
from ._ffi import ffi, lib

_KINDS = {
    lib.ATTN_DEVICE_GPU: "gpu",
    lib.ATTN_DEVICE_IGPU: "igpu",
    lib.ATTN_DEVICE_FPGA: "fpga",
    lib.ATTN_DEVICE_CPU_OPENCL: "cpu",
    lib.ATTN_DEVICE_OTHER: "other",
    lib.ATTN_DEVICE_NATIVE: "native",
}

_PRECISIONS = {
    "exact": lib.ATTN_PRECISION_EXACT,
    "tf32": lib.ATTN_PRECISION_TF32,
    "3xtf32": lib.ATTN_PRECISION_3XTF32,
    "bf16": lib.ATTN_PRECISION_BF16,
}

_PATHS = {
    "auto": lib.ATTN_PATH_AUTO,
    "fused": lib.ATTN_PATH_FUSED,
    "unfused": lib.ATTN_PATH_UNFUSED,
}


def _str(chars):
    return ffi.string(chars).decode("utf-8", "replace")


@dataclasses.dataclass(frozen=True)
class DeviceInfo:
    """One device, as attn-probe lists it (attn_device_info).  spec is the
    device string that selects it: Context(device=info.spec)."""

    name: str
    vendor: str
    kind: str  # "gpu", "igpu", "fpga", "cpu" (OpenCL), "other", "native"
    platform: str
    platform_index: int
    device_index: int
    compute_units: int
    max_clock_mhz: int
    global_mem_bytes: int
    local_mem_bytes: int
    max_alloc_bytes: int
    max_work_group_size: int
    fp16: bool
    fp64: bool
    unified_memory: bool
    usable: bool
    reason: str
    rank: float
    driver_version: str
    opencl_version: str
    opencl_c_version: str

    @property
    def spec(self):
        if self.kind == "native":
            return "native"
        return "%d:%d" % (self.platform_index, self.device_index)

    @classmethod
    def _from_c(cls, d):
        return cls(
            name=_str(d.name), vendor=_str(d.vendor),
            kind=_KINDS.get(int(d.kind), "other"), platform=_str(d.platform),
            platform_index=int(d.platform_index),
            device_index=int(d.device_index),
            compute_units=int(d.compute_units),
            max_clock_mhz=int(d.max_clock_mhz),
            global_mem_bytes=int(d.global_mem_bytes),
            local_mem_bytes=int(d.local_mem_bytes),
            max_alloc_bytes=int(d.max_alloc_bytes),
            max_work_group_size=int(d.max_work_group_size),
            fp16=bool(d.fp16), fp64=bool(d.fp64),
            unified_memory=bool(d.unified_memory), usable=bool(d.usable),
            reason=_str(d.reason), rank=float(d.rank),
            driver_version=_str(d.driver_version),
            opencl_version=_str(d.opencl_version),
            opencl_c_version=_str(d.opencl_c_version))


def devices():
    """The machine's devices as attn-probe lists them: every OpenCL device
    (usable or not, with the reason), then the native backend."""
    count = ffi.new("size_t *")
    check(lib.attn_devices(ffi.NULL, 0, count))
    out = []
    n = int(count[0])
    if n:
        arr = ffi.new("attn_device_info[]", n)
        arr[0].struct_size = ffi.sizeof("attn_device_info")
        check(lib.attn_devices(arr, n, count))
        out = [DeviceInfo._from_c(arr[i]) for i in range(min(n, count[0]))]
    with Context("native") as native:
        out.append(native.device)
    return out


class Context:
    """A device with its compiled kernels, queues and worker threads
    (attn_context).  Safe to use from several threads at once; close() (or
    the end of a with block, or garbage collection) releases it, after
    which no call may use it.

    device: "auto", "native", "gpu", "igpu", "fpga", "cpu", "P:D", a
    device-name substring, "all" or a comma list (ATTN_DEVICE overrides, as
    in C).  queues, threads: 0 for the defaults.  precision: "exact",
    "tf32", "3xtf32" or "bf16" (a permission, see attn.h).  kernel: a
    kernel variant every call must run (libattn.kernel_names()), or None.
    path: "auto", "fused" or "unfused".  allow_fallback: failed device work
    runs natively.  cache_dir: the program cache folder, "" for none, None
    for the default."""

    @c_ints
    def __init__(self, device="auto", *, queues=0, threads=0,
                 precision="exact", kernel=None, path="auto",
                 allow_fallback=True, cache_dir=None):
        self._ptr = None
        if precision not in _PRECISIONS:
            raise ValueError("precision must be one of %s, not %r" %
                             (", ".join(_PRECISIONS), precision))
        if path not in _PATHS:
            raise ValueError("path must be one of %s, not %r" %
                             (", ".join(_PATHS), path))
        if not isinstance(device, str):
            raise TypeError("device must be a string such as 'auto', "
                            "'native', 'gpu' or 'P:D'")
        opts = ffi.new("attn_options *")
        check(lib.attn_options_init_sized(opts, ffi.sizeof("attn_options")))
        keep = []

        def cstr(s):
            if "\0" in s:
                # C strings end there: "native\0junk" would read "native"
                raise ValueError("%r holds a NUL character" % (s,))
            c = ffi.new("char[]", s.encode())
            keep.append(c)
            return c

        opts.device = cstr(device)
        opts.queues = int(queues)
        opts.threads = int(threads)
        opts.cache_dir = ffi.NULL if cache_dir is None else cstr(cache_dir)
        opts.allow_fallback = 1 if allow_fallback else 0
        opts.path = _PATHS[path]
        opts.kernel = ffi.NULL if kernel is None else cstr(kernel)
        opts.precision = _PRECISIONS[precision]
        out = ffi.new("attn_context **")
        check(lib.attn_context_create(opts, out))
        self._ptr = out[0]
        self._spec = device
        self._close_lock = threading.Lock()
        info = ffi.new("attn_device_info *")
        info.struct_size = ffi.sizeof("attn_device_info")
        check(lib.attn_context_device(self._ptr, info), self._ptr)
        self._device = DeviceInfo._from_c(info)
        self._precision = precision

    @property
    def device(self):
        """The DeviceInfo of the device that runs this context's work."""
        return self._device

    @property
    def precision(self):
        """The precision asked of this context ("exact", "tf32", ...)."""
        return self._precision

    @property
    def last_error(self):
        """The context's last failure or fallback sentence, or ""."""
        p = self._handle()
        return ffi.string(lib.attn_context_last_error(p)).decode(
            "utf-8", "replace")

    def _handle(self):
        if self._ptr is None:
            raise InvalidArgumentError(lib.ATTN_ERR_INVALID_ARGUMENT,
                                       "the context is closed")
        return self._ptr

    def close(self):
        """Releases the context (no call may be running on it)."""
        with self._close_lock:
            if self._ptr is not None:
                lib.attn_context_destroy(self._ptr)
                self._ptr = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        ptr = getattr(self, "_ptr", None)
        if ptr is not None:
            self._ptr = None
            try:
                lib.attn_context_destroy(ptr)
            except (AttributeError, TypeError):
                pass  # interpreter shutdown: the bindings are gone already

    def __repr__(self):
        state = "closed" if self._ptr is None else self._device.name
        return "libattn.Context(%r: %s)" % (self._spec, state)


_default_lock = threading.Lock()
_default_contexts = {}


def context_for(device):
    """device as a Context: a Context as it is, None for the default
    ("auto"), a string for a context kept per string for reuse."""
    if isinstance(device, Context):
        return device
    if device is None:
        device = "auto"
    if not isinstance(device, str):
        raise TypeError("device must be None, a device string or a "
                        "libattn.Context")
    with _default_lock:
        ctx = _default_contexts.get(device)
        if ctx is None:
            ctx = Context(device)
            _default_contexts[device] = ctx
        return ctx


def kernel_names():
    """The OpenCL kernel variants of this build (attn_kernel_name)."""
    names = []
    i = 0
    while True:
        p = lib.attn_kernel_name(i)
        if p == ffi.NULL:
            return names
        names.append(ffi.string(p).decode())
        i += 1

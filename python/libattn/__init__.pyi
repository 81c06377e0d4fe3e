# SPDX-License-Identifier: Apache-2.0
"""Type stub of the libattn package (see __init__.py)."""

from typing import Any, Dict, List, Literal, Optional, Tuple, Union, overload

import numpy as np

__version__: str

Precision = Literal["exact", "tf32", "3xtf32", "bf16"]
Path = Literal["auto", "fused", "unfused"]
DeviceKind = Literal["gpu", "igpu", "fpga", "cpu", "other", "native"]
Array = Any  # a numpy array or a DLPack-capable CPU tensor


class LibattnError(RuntimeError):
    status: int
    status_name: str


class InvalidArgumentError(LibattnError, ValueError): ...
class OutOfMemoryError(LibattnError, MemoryError): ...
class NoDeviceError(LibattnError): ...
class BuildFailedError(LibattnError): ...
class DeviceError(LibattnError): ...
class UnsupportedError(LibattnError, NotImplementedError): ...
class LibattnIOError(LibattnError, OSError): ...


class DeviceInfo:
    name: str
    vendor: str
    kind: DeviceKind
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
    def spec(self) -> str: ...


def devices() -> List[DeviceInfo]: ...
def kernel_names() -> List[str]: ...


class Context:
    def __init__(self, device: str = ..., *, queues: int = ...,
                 threads: int = ..., precision: Precision = ...,
                 kernel: Optional[str] = ..., path: Path = ...,
                 allow_fallback: bool = ...,
                 cache_dir: Optional[str] = ...) -> None: ...
    @property
    def device(self) -> DeviceInfo: ...
    @property
    def precision(self) -> Precision: ...
    @property
    def last_error(self) -> str: ...
    def close(self) -> None: ...
    def __enter__(self) -> "Context": ...
    def __exit__(self, *exc: Any) -> None: ...


Device = Union[None, str, Context]


@overload
def scaled_dot_product_attention(
        query: Array, key: Array, value: Array,
        attn_mask: Optional[Array] = ..., dropout_p: float = ...,
        is_causal: bool = ..., scale: Optional[float] = ...,
        enable_gqa: bool = ..., *, device: Device = ...,
        return_lse: Literal[False] = ..., window: int = ...,
        causal_offset: int = ...) -> Array: ...
@overload
def scaled_dot_product_attention(
        query: Array, key: Array, value: Array,
        attn_mask: Optional[Array] = ..., dropout_p: float = ...,
        is_causal: bool = ..., scale: Optional[float] = ...,
        enable_gqa: bool = ..., *, device: Device = ...,
        return_lse: Literal[True],
        window: int = ..., causal_offset: int = ...) -> Tuple[Array, Array]: ...


def scaled_dot_product_attention_backward(
        grad_output: Array, query: Array, key: Array, value: Array,
        output: Array, lse: Array, attn_mask: Optional[Array] = ...,
        is_causal: bool = ..., scale: Optional[float] = ...,
        enable_gqa: bool = ..., *,
        device: Device = ...,
        grad_attn_mask: bool = ..., window: int = ...,
        causal_offset: int = ...) -> Tuple[Array, ...]: ...


def varlen_attention(
        query: Array, key: Array, value: Array, cu_seqlens_q: Array,
        cu_seqlens_k: Array, max_seqlen_q: Optional[int] = ...,
        max_seqlen_k: Optional[int] = ..., is_causal: bool = ...,
        scale: Optional[float] = ..., *, window: int = ...,
        device: Device = ...,
        return_lse: bool = ...) -> Union[Array, Tuple[Array, Array]]: ...


def varlen_attention_backward(
        grad_output: Array, query: Array, key: Array, value: Array,
        output: Array, lse: Array, cu_seqlens_q: Array, cu_seqlens_k: Array,
        max_seqlen_q: Optional[int] = ..., max_seqlen_k: Optional[int] = ...,
        is_causal: bool = ..., scale: Optional[float] = ..., *,
        window: int = ...,
        device: Device = ...) -> Tuple[Array, Array, Array]: ...


class MultiheadAttention:
    embed_dim: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    batch_first: bool
    posenc: str
    wq: np.ndarray
    wk: np.ndarray
    wv: np.ndarray
    wo: np.ndarray
    bq: Optional[np.ndarray]
    bk: Optional[np.ndarray]
    bv: Optional[np.ndarray]
    bo: Optional[np.ndarray]
    def __init__(self, embed_dim: int, num_heads: int, *,
                 num_kv_heads: Optional[int] = ..., bias: bool = ...,
                 batch_first: bool = ...,
                 posenc: Literal["none", "sinusoidal", "learned",
                                 "rope"] = ...,
                 pos_table: Optional[Array] = ..., device: Device = ...,
                 rng: Optional[np.random.Generator] = ...) -> None: ...
    def load_state_dict(self, state: Dict[str, Any]) -> "MultiheadAttention":
        ...
    @classmethod
    def from_torch(cls, module: Any, *,
                   device: Device = ...) -> "MultiheadAttention": ...
    def __call__(self, query: Array, key: Optional[Array] = ...,
                 value: Optional[Array] = ...,
                 key_padding_mask: Optional[Array] = ...,
                 need_weights: bool = ..., attn_mask: Optional[Array] = ...,
                 is_causal: bool = ..., *,
                 pos_offset: int = ...) -> Tuple[Array, None]: ...

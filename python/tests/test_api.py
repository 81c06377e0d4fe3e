# SPDX-License-Identifier: Apache-2.0
"""Devices, contexts, errors (every status as its exception, with the
library's sentence), forced kernels and threads."""

import threading

import numpy as np
import pytest

import libattn
from conftest import CL_CPU
from reference import check_close, sdpa


def f32(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


def test_devices_lists_native_last():
    devs = libattn.devices()
    assert devs and devs[-1].kind == "native" and devs[-1].usable
    for d in devs:
        assert isinstance(d, libattn.DeviceInfo) and d.name and d.reason
        if d.usable:
            with libattn.Context(d.spec) as c:
                assert c.device.name == d.name


def test_context_properties():
    with libattn.Context("native", threads=1, precision="bf16") as c:
        assert c.device.kind == "native" and c.precision == "bf16"
        assert c.last_error == ""
        assert "native" in repr(c)
    assert "closed" in repr(c)


def test_closed_context_raises(rng):
    c = libattn.Context("native")
    c.close()
    c.close()  # twice is harmless
    q = f32(rng, (1, 1, 2, 4))
    with pytest.raises(libattn.InvalidArgumentError, match="closed"):
        libattn.scaled_dot_product_attention(q, q, q, device=c)


def test_bad_options():
    with pytest.raises(libattn.NoDeviceError) as e:
        libattn.Context("no-such-device-anywhere")
    assert e.value.status_name == "ATTN_ERR_NO_DEVICE" and str(e.value)
    with pytest.raises(libattn.InvalidArgumentError) as e:
        libattn.Context("native", kernel="no-such-kernel")
    assert "no-such-kernel" in str(e.value)
    with pytest.raises(ValueError):
        libattn.Context("native", precision="fp8")
    with pytest.raises(ValueError):
        libattn.Context("native", path="sideways")
    with pytest.raises(TypeError):
        libattn.Context(3)


def test_argument_errors(rng):
    q = f32(rng, (1, 2, 4, 8))
    sdpa_ = libattn.scaled_dot_product_attention
    with pytest.raises(ValueError, match="dropout"):
        sdpa_(q, q, q, dropout_p=0.1)
    with pytest.raises(ValueError, match="is_causal"):
        sdpa_(q, q, q, attn_mask=np.ones((4, 4), bool), is_causal=True)
    with pytest.raises(TypeError, match="one dtype"):
        sdpa_(q, q.astype(np.float16), q)
    with pytest.raises(TypeError, match="float64"):
        sdpa_(q.astype(np.float64), q.astype(np.float64),
              q.astype(np.float64))
    with pytest.raises(ValueError, match="enable_gqa"):
        sdpa_(q, q[:, :1], q[:, :1])
    with pytest.raises(ValueError, match="divide"):
        sdpa_(f32(rng, (1, 3, 4, 8)), q, q, enable_gqa=True)
    with pytest.raises(ValueError, match="broadcast"):
        sdpa_(q, q, q, attn_mask=np.ones((3, 4), bool))
    with pytest.raises(TypeError, match="bool or a float"):
        sdpa_(q, q, q, attn_mask=np.ones((4, 4), np.int32))
    with pytest.raises(ValueError, match="scale=0"):
        sdpa_(q, q, q, scale=0.0)
    with pytest.raises(TypeError):
        sdpa_("q", q, q)
    # The library's own refusal, with its sentence: a non-finite scale.
    with pytest.raises(libattn.InvalidArgumentError) as e:
        sdpa_(q, q, q, scale=float("nan"), device="native")
    assert e.value.status_name == "ATTN_ERR_INVALID_ARGUMENT"
    assert "scale" in str(e.value)


@pytest.mark.skipif(CL_CPU is None, reason="no usable OpenCL CPU device")
def test_forced_kernels_on_opencl_cpu(rng):
    q = f32(rng, (2, 4, 24, 32))
    k = f32(rng, (2, 2, 40, 32))
    v = f32(rng, (2, 2, 40, 32))
    want, _, tol, _ = sdpa(q, k, v, enable_gqa=True)
    names = libattn.kernel_names()
    assert "fused" in names and "unfused" in names
    ran, declined = set(), set()
    for name in names:
        with libattn.Context(CL_CPU, kernel=name, allow_fallback=False) as c:
            try:
                o = libattn.scaled_dot_product_attention(
                    q, k, v, enable_gqa=True, device=c)
            except libattn.UnsupportedError as e:
                # A kernel that declines the shape (decode: too many query
                # rows) or the precision (mma at exact) says why.
                assert e.status_name == "ATTN_ERR_UNSUPPORTED" and str(e)
                declined.add(name)
                continue
            check_close(o, want, tol, "kernel " + name)
            ran.add(name)
    assert {"unfused", "fused"} <= ran
    assert "mma" not in ran


def test_threads_share_a_context(rng):
    q = f32(rng, (2, 4, 64, 32))
    k = f32(rng, (2, 4, 96, 32))
    v = f32(rng, (2, 4, 96, 32))
    want = libattn.scaled_dot_product_attention(q, k, v, device="native")
    results, errors = [], []
    ctx = libattn.Context("native")

    def work():
        try:
            for _ in range(5):
                results.append(libattn.scaled_dot_product_attention(
                    q, k, v, device=ctx))
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ctx.close()
    assert not errors and len(results) == 20
    for r in results:
        assert np.array_equal(r, want)

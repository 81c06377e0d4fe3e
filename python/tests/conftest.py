# SPDX-License-Identifier: Apache-2.0
"""Contexts the tests run on: the native backend always, and the OpenCL
CPU device (PoCL) where the machine has one usable; fallback off so that a
device failure is a failure, not a quiet native run."""

import numpy as np
import pytest

import libattn


def _opencl_cpu():
    for d in libattn.devices():
        if d.kind == "cpu" and d.usable:
            return d.spec
    return None


CL_CPU = _opencl_cpu()
BACKENDS = ["native"] + (["opencl-cpu"] if CL_CPU else [])


@pytest.fixture(scope="session", params=BACKENDS)
def ctx(request):
    spec = "native" if request.param == "native" else CL_CPU
    with libattn.Context(spec, allow_fallback=False) as c:
        yield c


@pytest.fixture
def rng():
    return np.random.default_rng(1234)

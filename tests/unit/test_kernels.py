"""The compiled loops come from the install (numba's ahead-of-time build), and write what
numba's JIT of the same source writes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from connect_sync.transforms import kernels
from connect_sync.transforms.events import property_objects, track_payloads
from connect_sync.transforms.traits import device_tokens, latest_traits
from connect_sync.transforms.users import identify_payloads
from hypothesis import HealthCheck, given, settings

from tests.unit.test_properties import REGIONS, identify_frames, track_frames

needs_aot = pytest.mark.skipif(
    kernels.compiled_module() is None and os.environ.get("CI") != "true",
    reason="the ahead-of-time kernels are not built here (pip install -e . builds them)",
)


@contextmanager
def jit_kernels() -> Iterator[None]:
    """numba's JIT of the kernels' source for the duration, as without the AOT build."""
    previous = os.environ.get(kernels.JIT_VARIABLE)
    os.environ[kernels.JIT_VARIABLE] = "1"
    kernels.compiled_module.cache_clear()
    kernels.kernel.cache_clear()
    try:
        yield
    finally:
        if previous is None:
            del os.environ[kernels.JIT_VARIABLE]
        else:
            os.environ[kernels.JIT_VARIABLE] = previous
        kernels.compiled_module.cache_clear()
        kernels.kernel.cache_clear()


def both_ways(build: Callable[[], Any]) -> tuple[Any, Any]:
    compiled = build()
    with jit_kernels():
        jitted = build()
    return compiled, jitted


@needs_aot
def test_the_install_built_the_kernels_ahead_of_time() -> None:
    assert kernels.kernels_path() == "aot"
    assert set(kernels.SIGNATURES) <= set(dir(kernels.compiled_module()))


@needs_aot
def test_a_payload_build_with_the_built_kernels_loads_no_numba() -> None:
    probe = (
        "import sys\n"
        "from datetime import UTC, datetime\n"
        "import pandas as pd, pyarrow as pa\n"
        "from connect_sync.transforms.traits import device_tokens, latest_traits\n"
        "from connect_sync.transforms.users import identify_payloads\n"
        "at = datetime(2026, 11, 1, tzinfo=UTC)\n"
        "frame = pa.table({'id': ['m1', 'm2'], 'canonical_id': ['u1', 'u2'],\n"
        "    'user_id': ['u1', 'u2'], 'timestamp': [at, at], 'received_at': [at, at],\n"
        "    'email': ['a@example.com', None], 'phone': ['+1 415 555 0101', None],\n"
        "    'logins': [3, None]}).to_pandas(types_mapper=pd.ArrowDtype)\n"
        "built = identify_payloads(latest_traits(frame), device_tokens(frame), None)\n"
        "assert len(built.payloads) == 2, built\n"
        "print('numba' in sys.modules, 'llvmlite' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != kernels.JIT_VARIABLE}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "False"]


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@needs_aot
@SETTINGS
@given(identify_frames(), REGIONS)
def test_identify_payloads_are_the_same_bytes_from_either_kernels(identifies, region) -> None:
    compiled, jitted = both_ways(
        lambda: identify_payloads(latest_traits(identifies), device_tokens(identifies), region)
    )
    assert compiled.payloads == jitted.payloads


@needs_aot
@SETTINGS
@given(track_frames())
def test_track_payloads_are_the_same_bytes_from_either_kernels(frames) -> None:
    tracks, table = frames
    compiled, jitted = both_ways(lambda: track_payloads(tracks, property_objects(table)))
    assert compiled.payloads == jitted.payloads

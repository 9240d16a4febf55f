"""The compiled loops (`json_kernels`, `latest_kernel`, `text_kernels`), machine code from
the install where it can be.

`pip install` compiles them ahead of time into `connect_sync.transforms._kernels` (numba's
AOT compiler: `kernels_aot.py`, run by `setup.py`; generic code for the CPU family): a run
then loads them in milliseconds and never imports numba. Where that module is missing (a
build without a C compiler, a checkout used without installing it), or when
`CONNECT_SYNC_JIT_KERNELS=1` asks for it, numba compiles the same functions on first use
and caches them beside their source: several seconds the first time in a fresh
environment.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from functools import cache
from typing import Any

from connect_sync.transforms.kernels_aot import SIGNATURES

log = logging.getLogger(__name__)

JIT_VARIABLE = "CONNECT_SYNC_JIT_KERNELS"


@cache
def compiled_module() -> Any | None:
    """The ahead-of-time build, None where it is not installed or JIT is asked for."""
    if os.environ.get(JIT_VARIABLE, "") not in ("", "0"):
        return None
    try:
        from connect_sync.transforms import _kernels  # type: ignore[attr-defined]
    except ImportError:
        log.debug("no ahead-of-time kernels installed: numba compiles them on first use")
        return None
    return _kernels


@cache
def kernel(name: str) -> Callable[..., Any]:
    """Kernel `name`: ahead-of-time compiled, else numba's JIT of its source."""
    built = compiled_module()
    if built is not None:
        return getattr(built, name)
    module, function, _ = SIGNATURES[name]
    return getattr(importlib.import_module(f"connect_sync.transforms.{module}"), function)


def kernels_path() -> str:
    """Which kernels a run uses: `aot` or `jit` (for reports and benchmarks)."""
    return "aot" if compiled_module() is not None else "jit"

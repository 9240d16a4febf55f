"""Builds the compiled loops ahead of time (`transforms/kernels_aot.py`) as the extension
module `connect_sync.transforms._kernels`; everything else is in pyproject.toml.

The kernels' source modules are imported from this checkout under the package's names
(the package itself is not installed yet while it builds). A build that cannot compile
(no C compiler) still installs: the extension is optional, and the kernels are then
compiled by numba's JIT on first use (`transforms/kernels.py`).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent


def _package_from_checkout() -> None:
    """`connect_sync.transforms.*` importable from the checkout's folders, without running
    the package's `__init__` modules (which import its run-time dependencies)."""
    packages = (("connect_sync", "connect_sync"), ("connect_sync.transforms", "transforms"))
    for name, folder in packages:
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.__path__ = [str(ROOT / folder)]
            sys.modules[name] = module


def kernel_extensions() -> list:
    _package_from_checkout()
    from connect_sync.transforms.kernels_aot import compiler

    extension = compiler().distutils_extension()
    extension.optional = True
    return [extension]


setup(ext_modules=kernel_extensions())

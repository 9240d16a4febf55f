"""A dialect's driver or emulator: skipped locally when missing, a failure in CI."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def require(module: str, extra: str) -> ModuleType:
    """The module, or a skip (locally) / failure (CI=true) naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        message = f"{module} is missing: pip install -e '.[{extra}]' ({exc})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"required in CI: {message}")
        pytest.skip(message)

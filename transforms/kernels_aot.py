"""The ahead-of-time build of the compiled loops: numba's AOT compiler (`numba.pycc`)
exports each kernel with the one signature the transforms call it with. `setup.py` makes
it the extension module `connect_sync.transforms._kernels`; `kernels.kernel` loads it.

Build-time only: imported by `setup.py` (with numba from the build requirements), never at
run time. A new kernel is one line in SIGNATURES.
"""

from __future__ import annotations

from typing import Any

_I = "int64[::1]"  # C-contiguous one-dimensional arrays
_U = "uint8[::1]"
_B = "boolean[::1]"
_I2 = "int64[:, ::1]"
_B2 = "boolean[:, ::1]"

#: Kernel name -> (module, function, numba signature).
SIGNATURES: dict[str, tuple[str, str, str]] = {
    "latest_rows": ("latest_kernel", "latest_rows", f"{_I}({_I}, {_I}, {_B}, int64)"),
    "last_by_keys": ("latest_kernel", "last_by_keys", f"{_I}({_I}, {_I2}, int64)"),
    "keep_digits": ("text_kernels", "keep_digits", f"int64({_I}, {_U}, {_I}, {_U})"),
    "object_bounds": (
        "json_kernels",
        "object_bounds",
        f"{_I}({_I}, {_I}, {_U}, {_I}, {_B2}, {_I2}, {_I2}, {_U})",
    ),
    "write_objects": (
        "json_kernels",
        "write_objects",
        f"void({_U}, {_I}, {_I}, {_I}, {_U}, {_I}, {_B2}, {_I2}, {_I2}, {_U})",
    ),
    "list_bounds": ("json_kernels", "list_bounds", f"{_I}({_B}, {_I}, {_I}, {_U}, boolean)"),
    "write_lists": (
        "json_kernels",
        "write_lists",
        f"void({_U}, {_I}, {_B}, {_I}, {_I}, {_U}, boolean)",
    ),
}


def compiler() -> Any:
    """numba's CC with every kernel exported, for `CC.distutils_extension()`."""
    import importlib

    from numba.pycc import CC

    cc = CC("_kernels")
    for name, (module, function, signature) in SIGNATURES.items():
        source = importlib.import_module(f"connect_sync.transforms.{module}")
        cc.export(name, signature)(getattr(source, function).py_func)
    return cc

"""The field kinds the compiled JSON writers (`transforms.json_kernels`) take: JSON text
written as it is, text written as a JSON string (escaped or known to need no escape),
integers, booleans. Apart from the kernels, so naming a kind does not load numba."""

RAW, QUOTED, ESCAPED, INT, BOOL = 0, 1, 2, 3, 4

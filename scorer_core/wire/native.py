"""The wire's native modules (``_rows.c``, ``_tensors.c``), imported in one place.

Why: a checkout used without installing it has neither built, and Python's "no module named
scorer_core.wire._rows" does not say what to do. Everything that calls them imports them from
here, so that the message says it once for both.
"""

from __future__ import annotations

try:
    from scorer_core.wire._rows import distinct_texts, quoted_cells, quoted_numbers, string_rows
    from scorer_core.wire._tensors import data_arrays, plain_request, plain_tensors
except ImportError as error:
    raise ImportError(
        f"scorer_core's native modules (scorer_core/wire/_rows.c and _tensors.c) are not built ({error}): "
        "install the package (`make install`, or `pip install -e .` with gcc and Python's headers) "
        "to build them"
    ) from error

__all__ = [
    "data_arrays",
    "distinct_texts",
    "plain_request",
    "plain_tensors",
    "quoted_cells",
    "quoted_numbers",
    "string_rows",
]

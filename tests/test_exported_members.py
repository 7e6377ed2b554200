from __future__ import annotations

import scorer_core


def test_all_is_sorted_and_complete():
    assert scorer_core.__all__ == sorted(scorer_core.__all__)
    public = {
        name
        for name, value in vars(scorer_core).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("scorer_core")
    }
    assert public - {"hookspecs"} <= set(scorer_core.__all__), public - set(scorer_core.__all__)
    for name in scorer_core.__all__:
        assert hasattr(scorer_core, name), name

"""``ForwardedHeaders``: the mapping model code reads from ``request_headers``.

Which headers are forwarded is the operator's configuration (``H2O_SCORER_FORWARD_HEADERS``,
parsed in ``scorer_core.config.forwarding``); this is what model code receives.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["ForwardedHeaders"]


class ForwardedHeaders(dict[str, str]):
    """The forwarded headers, keyed by the names as the operator wrote them, looked up in any case.

    HTTP servers lower-case header names, but model code written from H2O's guide does
    ``headers.get("Authorization", "")``. This is a real ``dict`` (so ``json.dumps`` and pickling
    work) whose lookups ignore case. It is read-only: one mapping may be shared by every request in
    a batch, so a model that edited it would leak into its neighbours.
    """

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(items)
        self._lower = {key.lower(): key for key in self}

    def _key(self, name: str) -> str:
        return self._lower.get(name.lower(), name)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(self._key(name))

    def __contains__(self, name: object) -> bool:
        return super().__contains__(self._key(name) if isinstance(name, str) else name)

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(self._key(name), default)

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("forwarded headers are read-only; copy them with dict(headers) first")

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = _read_only
    __ior__ = _read_only

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (dict(self),))

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset((k.lower(), v) for k, v in self.items()))

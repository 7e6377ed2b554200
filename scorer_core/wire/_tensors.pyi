from typing import Any, TypeVar

T = TypeVar("T", bound=tuple[Any, ...])

def plain_tensors(raw_inputs: list[Any], tensor_type: type[T], /) -> list[T] | None: ...
def data_arrays(
    body: bytes, min_bytes: int, piece_bytes: int, /
) -> list[tuple[int, int, tuple[int, ...]]] | None: ...

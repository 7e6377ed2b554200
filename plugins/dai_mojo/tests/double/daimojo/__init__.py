"""A test double of the ``daimojo`` package (2.9.2), for machines without a Driverless AI licence.

Put this directory first on ``sys.path`` (tests/conftest.py and the servers the tests start do)
and ``import daimojo`` finds it instead of the installed package. Its public surface copies the
installed ``daimojo/__init__.py`` and ``daimojo/model.py`` (read from the 2.9.2 wheel): the
``model`` class, its attributes and ``predict``'s arguments, checks and messages. A pipeline is
what DAI exports, a zip holding ``mojo/pipeline.pb``, and the double reads that protobuf with the
installed wheel's own ``Pipeline_pb2``. What the real package computes in C++ (``cppmojo``) is
replaced by a small linear pipeline described beside it in ``mojo/double.json`` (see
``model.py``).
"""

import importlib.metadata
from pathlib import Path


def _installed_package_dir():
    """The real package's directory, past this double that shadows it on sys.path."""
    for entry in importlib.metadata.distribution("daimojo").files or []:
        if str(entry).replace("\\", "/") == "daimojo/Pipeline_pb2.py":
            return str(Path(entry.locate()).parent)
    raise ImportError("the daimojo wheel is not installed: the double reads pipelines with its Pipeline_pb2")


# After this directory, so that `daimojo.model` is the double's and `daimojo.Pipeline_pb2` (and the
# modules it imports as `daimojo.*_pb2`) the wheel's.
__path__.append(_installed_package_dir())

from daimojo.model import model  # noqa: E402

__version__ = "2.9.2+double"

__all__ = ["model"]

"""A test double of the ``daimojo`` package (2.9.2), for machines without a Driverless AI licence.

Put this directory first on ``sys.path`` (tests/conftest.py and the servers the tests start do)
and ``import daimojo`` finds it instead of the installed package. Its public surface copies the
installed ``daimojo/__init__.py`` and ``daimojo/model.py`` (read from the 2.9.2 wheel): the
``model`` class, its attributes and ``predict``'s arguments, checks and messages. What the real
package computes in C++ (``cppmojo``) is replaced by a small linear pipeline described by a JSON
file (see ``model.py``); the real package reads a protobuf pipeline instead.
"""

from daimojo.model import model

__version__ = "2.9.2+double"

__all__ = ["model"]

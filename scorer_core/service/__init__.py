"""The scoring service (layer 5): what a request means, whatever protocol spelt it.

Admission (``admission``), a scoring task prepared from a request's fields, rows and options
(``tasks``), the request deadline and the batcher (``dispatch``), the answers as data and their
encoding (``answers``), and the path every scoring request takes through them (``plane``). The
HTTP front (``server``) and the file jobs of ``scorer batch`` (``jobs``) both call it. Imports
the layers below it, never a web framework: a Spark executor or a second protocol's front needs
none.
"""

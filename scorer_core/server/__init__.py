"""The server (layer 4): the ASGI app, request preparation, admission, dispatch and responses.

Imports every layer below it; never a ``Runtime`` object: model calls go through an executor.
"""

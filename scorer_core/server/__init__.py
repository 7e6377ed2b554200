"""The server (layer 7): HTTP. The ASGI entry, the app, H2O's routes, bodies, connections.

Imports every layer below it; what a request means is the service's (layer 5), and model calls
go through an executor, never a ``Runtime`` object.
"""

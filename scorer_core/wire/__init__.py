"""The wire (layer 3): H2O's MOJO REST contract, request cells to typed columns and back.

Imports the plugin API and ``config``. Pure functions of bytes, schemas and columns: no model
calls, no event loop.
"""

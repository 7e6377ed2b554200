"""The wire (layer 3): H2O's MOJO REST contract, request cells to typed columns and back.

Imports the plugin API and ``config``. Pure functions of bytes, schemas and columns: no model
calls, no event loop, no files (those are ``tables``). One exception: ``collector`` pauses the
process's garbage collector around the pieces ``rows_array`` parses, a process-level policy kept
here because the parse, the lowest layer that needs it, is here.
"""

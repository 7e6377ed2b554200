"""Tables (layer 6): CSV, Parquet and JSON Lines files read and written in chunks of string cells.

``files`` opens them (a path, or a descriptor the server opened safely) and reads or writes
them in chunks; ``rows`` holds each CSV or JSON Lines row to a bounded size and reports a row
that cannot be read in its place. They open files, so they are not ``wire``'s pure functions of
bytes; their cells are the contract's, typed by ``wire.columns``. Used by the server (``GET
/model/score?file=``) and by the file jobs of ``scorer batch``. Imports the plugin API and
``wire`` only, though it sits above ``service``: nothing there reads files.
"""

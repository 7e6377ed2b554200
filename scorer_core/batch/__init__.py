"""Batch scoring (layer 7) of files and tables (``scorer batch``), through the scoring service.

The same tasks and answers as the HTTP API (``service``), never the server itself: a Spark
executor imports no web framework.
"""

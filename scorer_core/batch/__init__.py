"""Batch scoring of files and tables (``scorer batch``), with the HTTP API's own request code."""

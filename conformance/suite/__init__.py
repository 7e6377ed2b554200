"""The runnable suite: ``pytest --pyargs conformance.suite --scorer-model PATH``."""

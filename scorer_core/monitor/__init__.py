"""Monitoring export: every scored request and its answer, sent to Kafka, a CloudEvents receiver
or files, never on the scoring path (docs/monitoring.md).

The data plane tells ``Monitor.offer`` of each request (``service.scored.ScoredRequest``); the
monitor samples it and puts it in each sink's bounded ``Outbox``, whose own thread shapes the
events (``events``: typed rows, fields dropped or hashed) and hands them to the sink (``kafka``,
``cloudevents``, ``files``), retrying with back-off, and counting what was sent, dropped or failed.
"""

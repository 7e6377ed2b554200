"""File jobs (layer 8): ``scorer batch``, files and tables scored chunk by chunk through the service.

Named for what it runs, jobs over files, since "batch" is kept for what H2O's runtimes call
batching: concurrent requests merged into one model call (``execution``). The same tasks and
answers as the HTTP API (``service``), never the server itself: a Spark executor imports no web
framework.
"""

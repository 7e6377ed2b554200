"""Execution (layer 4): running a model on scoring tasks, in this process or in worker processes.

``facts`` holds what is known about the loaded model (picklable, shared with the server);
``scoring`` makes one checked model call; ``merging`` and ``batcher`` merge requests into calls;
``executors`` and ``workers`` decide where the calls run. Only executors hold a ``Runtime``.
Imports the plugin API, ``config`` and ``wire``.
"""

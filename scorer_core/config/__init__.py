"""Configuration (layer 2): the operator's settings, the installed plugins, the model to serve.

Imports the plugin API only. Nothing here runs a model or speaks HTTP.
"""

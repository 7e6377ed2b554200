"""A plugin with a typo in a hook name: start-up must fail and name it."""

from scorer_core import hookimpl


@hookimpl
def scorer_register_runtime():  # missing the final "s"
    return []

"""Customer client for the Subconscious text-to-image ordering API.

:mod:`subconscious_cli.client` is the library (quote, order, watch, download); the
``subconscious`` command in :mod:`subconscious_cli.main` is a thin shell over it.
"""

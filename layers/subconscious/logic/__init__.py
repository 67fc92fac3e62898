"""Business logic: plain functions over models, called by the thin handlers in ``functions/``."""

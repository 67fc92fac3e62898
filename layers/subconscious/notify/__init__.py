"""Notifying customers: the webhook sender (the one adapter that POSTs to a customer's URL)."""

"""Talking to a machine's automatic1111 server, and checking what it sends back."""

"""Data access: the only modules that talk to AWS. Each class takes an injectable client."""

"""The planner benchmark: a market simulator running the real quote and dispatch code against
replayed prices and spot traces, beside naive and greedy baselines and hindsight bounds.

``python -m bench.planner --traces DIR [--workload NAME] [--seed N]``; see ``report.py``.
"""

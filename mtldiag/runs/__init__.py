"""Runs: build the user's model and data from a spec, train, profile and compare.

``imports`` resolves the user's callables, ``build`` calls them, ``losses`` turns outputs into
per-task losses, ``train`` is the loop over the step engine, and ``profile`` / ``compare`` /
``validate`` are the three things a spec can be run for.
"""

"""Helpers of the journal and store tests: a recording subscriber, events, a small hub.

A package so that ``python -m tests.journal_support.kill_worker`` can run a child process.
"""

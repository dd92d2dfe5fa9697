"""Fault-injection suite for rotator (make chaos): see chaos/run.py."""

"""Evaluation: shifted-case protocol, metrics and reports."""

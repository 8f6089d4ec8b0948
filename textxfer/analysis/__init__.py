"""Analyses of data and runs beyond training: audits, label errors, domain shift."""

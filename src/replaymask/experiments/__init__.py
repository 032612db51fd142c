"""Experiments over many runs: sweeps, the results database, reports and plots."""

"""Reporting: experiment tracking, sweep summaries, reports (offline and W&B) and the analysis
of studies. Reads results files; imports nothing of afd but afd.core."""

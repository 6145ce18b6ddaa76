"""Entry points only: `python -m afd.train`, `python -m afd.report`, `python -m afd.summary`
(thin modules at the package top that call these)."""

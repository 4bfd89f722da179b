"""The task store's logic, written once for every SQL dialect over the seam in ``dialect.py``."""

"""``make bench``: performance measured against baselines taken in the same run."""

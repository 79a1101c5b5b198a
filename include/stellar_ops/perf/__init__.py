"""The weekly performance review (``perf_analysis``): checks against thresholds, week over week."""

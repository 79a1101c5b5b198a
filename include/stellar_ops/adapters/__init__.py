"""Thin Airflow adapters over the pure :mod:`stellar_ops` modules.

Only this subpackage imports Airflow. It turns connections into targets, reads the config
Variable at run time, and provides the alerting conventions and the tasks' one-call bodies.
"""

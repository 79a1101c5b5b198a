"""Thin Airflow adapters over the pure :mod:`stellar_ops` modules.

Only this subpackage imports Airflow. ``adapters/<procedure>.py`` holds each DAG's task bodies,
each running one step of its procedure's flow; ``adapters/common/`` what every DAG shares.
"""

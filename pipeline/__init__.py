"""Runboard's pipeline: train, track, queue and use image classifiers, with MLflow as the one store."""
import os

# Idle OpenMP threads sleep instead of spinning: spinning ones collapse when another process holds a
# core (measured on a busy 2-core box: 2 threads 4-10x slower than 1; passive ones on par). It must be
# set before torch loads, and every entry point (CLI, worker spare, dashboard) imports this package first.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

"""The team setup on one machine: PostgreSQL, an MLflow tracking server on it, a Ray head (services.py),
and `python -m pipeline.cluster`, which runs them with a worker and the dashboard (make cluster)."""

"""The dashboard's one door to MLflow: cached reads that return plain data (DataFrames, dicts).

Pages call `store.<function>` and never MlflowClient themselves. The modules behind it are named for
what they hold: connection (client, errors), listings (experiments, runs), histories (metric
histories), artifacts (files, evaluation, model description), models (registry, loaded models),
queue (the live queue); mlflow_internals is the one user of MLflow's private API. Cache lifetimes
are in dashboard/refresh.py.
"""
from dashboard.store.artifacts import (artifact_bytes, artifacts, confusion_matrix, model_file_bytes, model_info,
                                       per_class)
from dashboard.store.connection import (ERRORS, ArtifactNotFoundError, FilterError, RunNotFoundError, TrackingError,
                                        client)
from dashboard.store.histories import metric_histories
from dashboard.store.listings import experiments, forget_run, run, runs, versions
from dashboard.store.models import (explainer, forget_model_variants, forget_model_versions, forget_prune_jobs,
                                    model_variants, model_versions, predictor, prune_jobs, variant_predictor)
from dashboard.store.queue import forget_queue, live_log_tail, queue

__all__ = ["ERRORS", "ArtifactNotFoundError", "FilterError", "RunNotFoundError", "TrackingError", "artifact_bytes",
           "artifacts", "client", "confusion_matrix", "experiments", "explainer", "forget_model_variants",
           "forget_model_versions", "forget_prune_jobs", "forget_queue", "forget_run", "live_log_tail", "metric_histories", "model_file_bytes", "model_info",
           "model_variants", "model_versions", "per_class", "predictor", "prune_jobs", "queue", "run", "runs", "variant_predictor",
           "versions"]

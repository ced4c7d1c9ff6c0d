"""The dashboard's one door to MLflow: cached reads that return plain data (DataFrames, dicts).

Pages call `store.<function>` and never MlflowClient themselves. The modules behind it are named for
what they hold: connection (client, errors), listings (experiments, runs), histories (metric
histories), edits (a person's rename, note, tags, delete and restore), artifacts (files, evaluation,
model description), models (registry, loaded models), queue (the live queue), people (who signed in and
what MLflow lets them do); mlflow_internals is the one user of MLflow's private API. Cache lifetimes are
in dashboard/refresh.py.
"""
from dashboard.store.artifacts import (artifact_bytes, artifacts, calibration, confusion_matrix, embedding,
                                       kept_predictions, model_file_bytes, model_info, per_class)
from dashboard.store.connection import (ERRORS, ArtifactNotFoundError, FilterError, PermissionRefused, RunDeletedError,
                                        RunNotFoundError, TrackingError, client, refused)
from dashboard.store.edits import (DeletionPlan, EditError, delete_runs, delete_tag, deleted_runs, deletion_plan,
                                   rename_run, restore_runs, set_note, set_tag)
from dashboard.store.histories import SAMPLED_POINTS, metric_histories, sampled_histories
from dashboard.store.listings import (PICKER_RUNS, RunsPage, experiments, filter_choices, forget_run, has_live_runs,
                                      newest_run_experiment, run, run_counts, runs, runs_by_id, runs_page, sweep_runs,
                                      versions)
from dashboard.store.models import (explainer, forget_model_variants, forget_model_versions, forget_prune_jobs,
                                    model_tags, model_variants, model_versions, predictor, prune_jobs,
                                    variant_predictor)
from dashboard.store.people import Person, SignInRefused, refusal
from dashboard.store.queue import forget_queue, live_log_tail, queue
from dashboard.store.studies import study

__all__ = ["ArtifactNotFoundError", "DeletionPlan", "EditError", "ERRORS", "FilterError", "PICKER_RUNS",
           "PermissionRefused", "Person", "RunDeletedError", "RunNotFoundError", "RunsPage", "SAMPLED_POINTS",
           "SignInRefused", "TrackingError", "artifact_bytes", "artifacts", "calibration", "client",
           "confusion_matrix", "delete_runs", "delete_tag", "deleted_runs", "deletion_plan", "embedding",
           "experiments", "explainer", "filter_choices", "forget_model_variants", "forget_model_versions",
           "forget_prune_jobs", "forget_queue", "forget_run", "has_live_runs", "kept_predictions", "live_log_tail",
           "metric_histories", "model_file_bytes", "model_info", "model_tags", "model_variants", "model_versions",
           "newest_run_experiment", "per_class", "predictor", "prune_jobs", "queue", "refusal", "refused",
           "rename_run", "restore_runs", "run", "run_counts", "runs", "runs_by_id", "runs_page", "sampled_histories",
           "set_note", "set_tag", "study", "sweep_runs", "variant_predictor", "versions"]

"""The vocabulary every part shares: metric, tag, param and artifact names, run statuses, image suffixes.

It imports neither torch nor MLflow, so the dashboard reads a name without loading either. Whoever
writes or reads one of these names imports it from here; DESIGN.md's contracts list the same.
"""
from __future__ import annotations

# --- metrics (MLflow keys) -------------------------------------------------------------------
# per epoch, step = epoch number (1-based)
TRAIN_LOSS, TRAIN_ACCURACY = "train_loss", "train_accuracy"
VAL_LOSS, VAL_ACCURACY = "val_loss", "val_accuracy"
LR, EPOCH_SECONDS, THROUGHPUT = "lr", "epoch_seconds", "throughput_img_s"
EPOCH_METRICS = (TRAIN_LOSS, TRAIN_ACCURACY, VAL_LOSS, VAL_ACCURACY, LR, EPOCH_SECONDS, THROUGHPUT)
# per optimizer step, step = global step
TRAIN_LOSS_STEP = "train_loss_step"
STEP_METRICS = (TRAIN_LOSS_STEP,)
# at the end, step = last epoch
TEST_LOSS, TEST_ACCURACY = "test_loss", "test_accuracy"
TEST_PRECISION, TEST_RECALL, TEST_F1 = "test_precision_macro", "test_recall_macro", "test_f1_macro"
TEST_METRICS = (TEST_LOSS, TEST_ACCURACY, TEST_PRECISION, TEST_RECALL, TEST_F1)
# ...and, from the kept predictions (evaluation/predictions.npz), at the same step
TEST_ECE = "test_ece"                            # expected calibration error, 15 equal-width bins
TEST_AUC, TEST_AP = "test_auc_macro", "test_ap_macro"  # one vs rest, mean over the classes in the test split
TEST_TOP5 = "test_top5_accuracy"                 # only when a model has more than 5 classes
TRUST_METRICS = (TEST_ECE, TEST_AUC, TEST_AP, TEST_TOP5)
# on an exported variant's run (step 0): the variant's figures, and the original's under ORIGINAL_PREFIX
AGREEMENT = "agreement"                          # share of test images with the original's label
MAX_PROBABILITY_DIFF = "max_probability_diff"    # largest |p_variant - p_original| over images and classes
MAX_LOGIT_DIFF = "max_logit_diff"
MODEL_SIZE = "model_size_bytes"                  # the logged model's files
LATENCY_1_P50, LATENCY_1_P95 = "latency_1_p50_ms", "latency_1_p95_ms"      # one image per call
LATENCY_64_P50, LATENCY_64_P95 = "latency_64_p50_ms", "latency_64_p95_ms"  # a batch of 64 per call
LATENCY_METRICS = (LATENCY_1_P50, LATENCY_1_P95, LATENCY_64_P50, LATENCY_64_P95)
ORIGINAL_PREFIX = "original_"                    # original_test_accuracy, original_model_size_bytes, ...
# on a pruned variant's run (pipeline/serving/prune.py), beside the figures above
SPARSITY = "sparsity"                            # share of the original's parameters removed or zeroed
PARAMETERS = "parameters"                        # parameters the variant stores (zeros included)
COMPRESSED_SIZE = "compressed_size_bytes"        # the model file deflated: where zeroed weights pay off
PRUNED_TEST_ACCURACY = "pruned_test_accuracy"    # step 0: right after pruning, before fine-tuning
ACCURACY_DROP = "accuracy_drop"                  # original's test accuracy minus the variant's
ONNX_MAX_LOGIT_DIFF = "onnx_max_logit_diff"      # the pruned net's ONNX logits against its PyTorch logits
# with --compile, step 0: the warm-up, kept out of throughput_img_s
COMPILE_SECONDS = "compile_seconds"
# a learning-rate range test's run (tag runboard.kind=lr_find), step 0
SUGGESTED_LR = "suggested_lr"
SYSTEM_PREFIX = "system/"  # MLflow's own CPU/GPU/memory samples
# a data audit's run (tag runboard.kind=audit): its findings, step 0, and its progress
AUDIT_LABEL_ISSUES = "audit_label_issues"
AUDIT_EXACT_DUPLICATES = "audit_exact_duplicates"
AUDIT_NEAR_DUPLICATES = "audit_near_duplicates"
AUDIT_LABEL_CONFLICTS = "audit_label_conflicts"  # duplicate pairs filed under two different classes
AUDIT_LEAKS = "audit_leaks"
AUDIT_UNREADABLE = "audit_unreadable"
AUDIT_FOLDS_DONE = "audit_folds_done"            # step = fold number: the live page's progress


def is_per_step(metric: str) -> bool:
    """Logged at every optimizer step (x = global step), not once per epoch."""
    return metric in STEP_METRICS


# --- run statuses (MLflow's) -----------------------------------------------------------------
SCHEDULED, RUNNING, FINISHED, FAILED, KILLED = "SCHEDULED", "RUNNING", "FINISHED", "FAILED", "KILLED"
ACTIVE = (SCHEDULED, RUNNING)
ENDED = (FINISHED, FAILED, KILLED)
RESUMABLE = (FAILED, KILLED)             # what a resume (by hand or automatic) can continue

# --- tags ------------------------------------------------------------------------------------
# how a run ended
TAG_ERROR = "runboard.error"              # one line: why it FAILED or was KILLED
TAG_TRACEBACK = "runboard.traceback"      # the tail of the traceback (the whole is an artifact)
# what it ran on and what it saw
TAG_DEVICE = "runboard.device"
TAG_TORCH = "runboard.torch_version"
TAG_TORCHVISION = "runboard.torchvision_version"
TAG_CUDA = "runboard.cuda_version"
TAG_PYTHON = "runboard.python_version"
TAG_HOST = "runboard.host"
TAG_CLASSES = "runboard.classes"
TAG_TRAIN_IMAGES = "runboard.train_images"
TAG_VAL_IMAGES = "runboard.val_images"
TAG_TEST_IMAGES = "runboard.test_images"
TAG_PROCESSES = "runboard.processes"      # torchrun processes that trained it
TAG_STEPS_PER_EPOCH = "runboard.steps_per_epoch"  # optimizer steps per epoch, as the engine counts them
TAG_EPOCHS_RUN = "runboard.epochs_run"
TAG_BEST_EPOCH = "runboard.best_epoch"
TAG_KIND = "runboard.kind"                # what a run is when it is not a training run: lr_find
KIND_LR_FIND = "lr_find"
KIND_AUDIT = "audit"                      # a data audit of an image folder (pipeline/runs/audit.py)
# what it trained on (also logged with mlflow.log_input; tags so that lists read it without a query per run)
TAG_DATASET_NAME = "runboard.dataset_name"      # the dataset spec: digits, imagefolder:PATH
TAG_DATASET_SOURCE = "runboard.dataset_source"  # the folder relative to the data root, or the built-in's name
TAG_DATASET_DIGEST = "runboard.dataset_digest"  # sha256 hex of the files' relative paths and bytes (+ exclusions)
TAG_DATASET_FILES = "runboard.dataset_files"    # files (images) the digest covers
TAG_EXCLUDED = "runboard.excluded_files"        # files left out on purpose (data/excluded_files.txt)
TAG_EXCLUDED_REASON = "runboard.excluded_reason"  # ...and why, from the list's # lines
TAG_AUDIT_FOLDS_REUSED = "runboard.audit_folds_reused"  # a resumed audit: the folds an earlier attempt scored
TAG_AUDIT_FOLDER = "runboard.audit_folder"      # an audit run: the folder audited, relative to the data root
# the queue
TAG_QUEUED = "runboard.queued"            # submit time, unix seconds: marks a queue run, orders the queue
TAG_REGISTER = "runboard.register"        # the run option `register` (not a hyperparameter, so not a param)
TAG_WORKER = "runboard.worker"            # host:pid of the worker that owns the run
TAG_HEARTBEAT = "runboard.heartbeat"      # unix seconds, refreshed by the owning worker
TAG_BLOCKED = "runboard.blocked"          # on a queued run: why the worker cannot start runs now (its launcher's)
TAG_STARTED = "runboard.started"          # unix seconds the current attempt's training process was launched
TAG_TRAIN_STARTED = "runboard.train_started"  # unix seconds: data loaded, the first attempt's first epoch begins
TAG_TRAIN_ENDED = "runboard.train_ended"  # unix seconds: training and test evaluation done (before the model upload)
TAG_PID = "runboard.pid"                  # the training process's pid on the worker's machine
TAG_CANCEL = "runboard.cancel_requested"  # unix seconds; the owning worker stops the run
TAG_LOG_TAIL = "runboard.log_tail"        # the end of the training log, refreshed while it runs
TAG_ORPHANED = "runboard.orphaned"        # the worker that declared the run's process gone
TAG_ADOPTED = "runboard.adopted_by"       # "<worker> <process key>": a restarted worker that took over the run
# the Ray launcher
TAG_RAY_JOB = "runboard.ray_job"          # the Ray job's submission id ("runboard-<run id>")
TAG_RAY_NODE = "runboard.ray_node"        # the node Ray placed it on: "<ip> (<node id prefix>)"
# attempts: a run that died is requeued (SCHEDULED again) and resumes from its checkpoint
TAG_ATTEMPT = "runboard.attempt"          # 1, 2, ...: the attempt now queued or running (absent: the first)
TAG_ATTEMPT_REASON = "runboard.attempt_reason"    # why the current attempt was started
TAG_ATTEMPT_HISTORY = "runboard.attempt_history"  # one line per resume: "attempt N (automatic|by hand): why"
TAG_RETRIES = "runboard.retries"          # automatic resumes since the run was last started by hand
TAG_RETRY = "runboard.retry"              # "no" on a failure that another attempt would repeat (bad input, divergence)
# ...and their times, so that a resumed run counts training and waiting, not the time it stood stopped
TAG_ATTEMPT_QUEUED = "runboard.attempt_queued"    # unix seconds the current attempt (N > 1) was queued again
TAG_ATTEMPT_TRAIN_STARTED = "runboard.attempt_train_started"  # unix seconds the current attempt's training began
TAG_EARLIER_TRAINING = "runboard.earlier_training_s"  # seconds the attempts before this one trained, summed
TAG_EARLIER_QUEUED = "runboard.earlier_queued_s"      # seconds they waited for a worker, summed
TAG_STOPPED = "runboard.stopped_s"        # seconds the run stood ended (FAILED/KILLED) before its resumes, summed
TAG_CHECKPOINT = "runboard.checkpoint_epoch"  # the last whole epoch the latest checkpoint holds, once uploaded
TAG_CHECKPOINT_STEP = "runboard.checkpoint_step"  # ...and its optimizer step (mid-epoch checkpoints: past that epoch)
TAG_CHECKPOINT_FILE = "runboard.checkpoint_file"  # ...and its artifact path (checkpoints/a.pt or b.pt)
# sweeps
TAG_SWEEP = "runboard.sweep"              # on a sweep's parent run: grid or random
TAG_SWEEP_SPACE = "runboard.sweep_space"  # on the parent: the values swept, as JSON
TAG_SWEEP_ID = "runboard.sweep_id"        # on each run of a sweep: the parent's run id
TAG_SWEEP_RUNS = "runboard.sweep_runs"    # on the parent: its runs' ids, comma-separated
# studies (pipeline/queue/study.py): an Optuna search whose trials are queue runs under the study's run
KIND_STUDY = "study"                      # TAG_KIND of the study's own run (it trains nothing itself)
TAG_STUDY_SPACE = "runboard.study.space"  # on the study: {field: {"kind", "low", "high", "log", "choices"}} as JSON
TAG_STUDY_BASE = "runboard.study.base"    # ...the params every trial starts from, as JSON
TAG_STUDY_TRIALS = "runboard.study.trials"      # ...how many trials it runs in all (Continue raises it)
TAG_STUDY_PARALLEL = "runboard.study.parallel"  # ...how many of its trials may be queued or running at once
TAG_STUDY_OBJECTIVE = "runboard.study.objective"  # ...val_accuracy (maximized) or val_loss (minimized)
TAG_STUDY_PRUNER = "runboard.study.pruner"      # ...median, hyperband or none
TAG_STUDY_SAMPLER = "runboard.study.sampler"    # ...tpe or random
TAG_STUDY_SEED = "runboard.study.seed"          # ...the sampler's seed (trial N samples with seed + N)
TAG_STUDY_BEST_RUN = "runboard.study.best_run"  # ...the run id of its best trial so far
TAG_STUDY_SUMMED = "runboard.study.summarized"  # ...how many ended trials its study/ artifacts count
TAG_STUDY_ID = "runboard.study_id"        # on each trial: the study's run id
TAG_TRIAL = "runboard.trial"              # on each trial: its Optuna trial number (0-based)
TAG_PRUNED = "runboard.pruned_epoch"      # on a pruned trial: the epoch at whose end the pruner stopped it
TAG_TRIAL_ATTRS = "runboard.trial.attrs"  # on a trial: the pruner's own notes (Optuna system attrs) as JSON
PARAM_STUDY_TRIAL = "runboard.study.trial"  # runboard.study.trial.N on the study: whoever logs it creates trial N
BEST_VALUE = "best_value"                 # metric on the study: the objective's best trial value
STUDY_TRIALS_CSV = "study/trials.csv"     # number, run_id, state, value, epochs, one column per searched field
STUDY_IMPORTANCES_JSON = "study/importances.json"  # {field: importance} (Optuna's default evaluator)
# exported variants (pipeline/serving/export.py): each in its own run, linked to its source
TAG_EXPORT_SOURCE = "runboard.export_source"  # the pinned source model URI: models:/NAME/VERSION
TAG_VARIANT = "runboard.variant"          # which variant the run holds: one of VARIANTS
# edits from the dashboard (dashboard/store/edits.py)
TAG_DELETED = "runboard.deleted"          # unix seconds the run was deleted from Runboard (MLflow keeps no public time)
TAG_VARIANT = "runboard.variant"          # which variant the run holds: one of VARIANTS, or a pruned one
TAG_PRUNE = "runboard.prune"              # a pruned variant's spec, channels:0.5 or weights:0.8
TAG_ACCURACY_FLAG = "runboard.accuracy_flag"  # set when a pruned variant lost more accuracy than allowed
KIND_PRUNE = "prune"                      # TAG_KIND of a prune job's run (queued or not): fine-tune + export
# MLflow's own
TAG_PARENT = "mlflow.parentRunId"         # MLflow's nesting: its UI folds a sweep under the parent
TAG_USER = "mlflow.user"
TAG_SOURCE_NAME, TAG_SOURCE_TYPE = "mlflow.source.name", "mlflow.source.type"
TAG_NOTE = "mlflow.note.content"
TAG_RUN_NAME = "mlflow.runName"
TAG_LOG_MODEL_HISTORY = "mlflow.log-model.history"

# --- params that are not hyperparameters -----------------------------------------------------
PARAM_FOLDS = "audit_folds"               # an audit run: K of its K-fold cross-validation
PARAM_IMAGE_SIZE_RESOLVED = "image_size_resolved"  # "HxW" the run trained at (image_size 0 lets the data choose)
PARAM_CLAIM = "runboard.claim"            # "<owner> <process key> <claimed at>"; see queue/jobs.py
                                          # attempt N > 1 claims with runboard.claim.N (a param never changes)
PARAM_REQUEUE = "runboard.requeue"        # runboard.requeue.N: whoever logs it first starts attempt N
BOOKKEEPING_PREFIX = "runboard."          # params under it are the queue's, not the run's config

# --- artifacts -------------------------------------------------------------------------------
CONFUSION_MATRIX_JSON = "evaluation/confusion_matrix.json"  # {"labels": [...], "matrix": [[...]]}, rows = true
CONFUSION_MATRIX_PNG = "evaluation/confusion_matrix.png"
PER_CLASS_JSON = "evaluation/per_class.json"                # precision/recall/f1/support per class
MISCLASSIFIED_PNG = "evaluation/misclassified.png"          # a grid of the most confident mistakes
SKIPPED_FILES_TXT = "data/skipped_files.txt"               # unreadable files an image folder run left out, one a line
EXCLUDED_FILES_TXT = "data/excluded_files.txt"             # files left out on purpose, one a line (part of the digest)
DATASET_CONTEXT = "training"                                # log_input's context tag
AUDIT_SUMMARY_JSON = "audit/summary.json"                   # counts, balance, sizes, modes, unreadable files
AUDIT_DUPLICATES_CSV = "audit/duplicates.csv"               # path_a, path_b, kind (exact|near), distance
AUDIT_LEAKS_CSV = "audit/leaks.csv"                         # train_path, test_path, kind
AUDIT_LABEL_ISSUES_CSV = "audit/label_issues.csv"           # path, given, suggested, self_confidence, rank
AUDIT_FOLDS_DIR = "audit/folds"                             # fold-K.npz: a fold's held rows, reused on resume
AUDIT_OUT_OF_FOLD_NPZ = "audit/out_of_fold.npz"             # probabilities (N x C), labels, paths, classes (no pickle)
LR_FIND_JSON = "lr_find/lr_find.json"                       # {"lrs", "losses", "smoothed", "suggestion", ...}
LR_FIND_PNG = "lr_find/lr_find.png"                         # loss against learning rate
EXPLANATIONS_PNG = "evaluation/explanations.png"            # those mistakes' maps for the predicted and true class
EXPLANATIONS_NPZ = "evaluation/explanations.npz"            # the same as arrays (no pickle); see runs/train.py
PREDICTIONS_NPZ = "evaluation/predictions.npz"  # probabilities (N x C float32), labels, predicted, paths|indices
CALIBRATION_JSON = "evaluation/calibration.json"  # ece, mce, bins, temperature, ece_after_temperature
EMBEDDING_NPZ = "evaluation/embedding.npz"      # xy (N x 2, the test split's penultimate features by PCA), labels,
                                                # predicted, paths|indices, method
TEMPERATURE_KEY = "temperature"                # ...the fitted temperature, also in the model's preprocessing
TRACEBACK_TXT = "error/traceback.txt"
LOG_DIR = "logs"                                            # the training log: logs/train.log
LOG_NAME = "train.log"
CHECKPOINT_DIR = "checkpoints"                              # training checkpoints (torch.save, tensors only):
CHECKPOINT_SLOTS = ("a.pt", "b.pt")                         # written in turn, so a cut-off upload spares the other
CHECKPOINT_NAME = "last.pt"                                 # the one file of runs from before the two slots
MODEL_NAME = "model"                                        # the logged model's name in every run
PREPROCESSING_KEY = "runboard_preprocessing"                # key in the logged model's metadata
RESIZE_STRETCH, RESIZE_CENTER_CROP = "stretch", "center_crop"  # ...its "resize": plain, or ImageNet's (no key: plain)
VARIANT_KEY = "runboard_variant"                            # an exported variant's metadata: onnx or int8
SOURCE_KEY = "runboard_source"                              # ...and its source model URI
ORIGINAL, ONNX, INT8 = "original", "onnx", "int8"           # the variants of a registered version
VARIANTS = (ONNX, INT8)
INT8_SUFFIX = "+int8"                                       # a pruned variant quantized: channels:0.5+int8
PRUNE_PARAMS = ("source", "prune", "int8", "register_as", "max_accuracy_drop")  # a prune job's own params
EXPORT_EXPERIMENT = "exports"                               # where variant runs go

# --- inputs ----------------------------------------------------------------------------------
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})

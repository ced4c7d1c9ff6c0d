"""How fresh the dashboard's views are: every cache lifetime and refresh interval, in one place."""
from __future__ import annotations

LISTING_TTL = 5          # seconds a run listing, a run, an artifact list or the registry may be stale
QUEUE_TTL = 2            # seconds the live queue view's read may be stale
QUEUE_REFRESH = 2        # seconds between refreshes of the live queue view
LIVE_REFRESH = 10        # seconds between refreshes of pages that show an unfinished run
IMAGE_FOLDERS_TTL = 30   # seconds the launch form's list of image folders under the data root is kept
FOLDER_SCAN_TTL = 60     # seconds an image folder's scan (launch summary, playground samples) is kept
DOWNLOADS_KEPT = 256     # artifact files kept in memory (they never change once logged)
MODEL_INFOS_KEPT = 128   # logged models' descriptions kept
EXPORT_REFRESH = 2       # seconds between checks of an export running in the background (Registry page)
MODELS_KEPT = 8          # loaded models kept in memory (a resnet18 is ~45 MB)
HISTORY_POINTS_KEPT = 5_000_000  # metric points kept in memory (~120 MB) across sessions

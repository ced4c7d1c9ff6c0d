"""Start the dashboard with safe server settings: `python -m dashboard.serve` (the Procfile's `web`).

One place for Streamlit's flags: bind address and port from the settings, upload limit, no usage
statistics, XSRF protection on. Bound to anything but loopback, it refuses to start unless a
password is configured (RUNBOARD_PASSWORD or `password` in .streamlit/secrets.toml).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dashboard import auth  # noqa: E402
from pipeline import settings  # noqa: E402

# A page must fail in seconds, not after MLflow's default of 7 retries with backoff (minutes);
# values a user exported win.
CLIENT_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                   "MLFLOW_HTTP_REQUEST_TIMEOUT": "15", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


def client_defaults() -> None:
    """Set the dashboard's MLflow client defaults in this process (and so in the server it becomes)."""
    for name, value in CLIENT_DEFAULTS.items():
        os.environ.setdefault(name, value)


def streamlit_args() -> list[str]:
    """The argument list for `streamlit run` (never a shell string)."""
    return [
        sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
        "--server.address", settings.host(),
        "--server.port", str(settings.port()),
        "--server.headless", "true",
        # RUNBOARD_UPLOAD_MB, the one limit: the upload box says it and refuses a bigger file by name
        "--server.maxUploadSize", str(settings.upload_limit_mb()),
        "--server.enableXsrfProtection", "true",
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "minimal",  # no "Deploy" button or developer menu for users
    ]


def main() -> int:
    try:
        auth.check_startup(settings.host())
    except (auth.AuthError, settings.SettingError) as e:  # e.g. RUNBOARD_SIGN_IN=mlflow without a server
        print(f"error: {e}", file=sys.stderr)
        return 2
    os.chdir(ROOT)  # .streamlit/secrets.toml and relative store paths resolve from the project root
    client_defaults()
    args = streamlit_args()
    os.execv(args[0], args)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())

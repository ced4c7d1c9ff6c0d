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


def streamlit_args() -> list[str]:
    """The argument list for `streamlit run` (never a shell string)."""
    return [
        sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
        "--server.address", settings.host(),
        "--server.port", str(settings.port()),
        "--server.headless", "true",
        "--server.maxUploadSize", str(settings.upload_limit_mb()),
        "--server.enableXsrfProtection", "true",
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "minimal",  # no "Deploy" button or developer menu for users
    ]


def main() -> int:
    try:
        auth.check_startup(settings.host())
    except auth.AuthError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    os.chdir(ROOT)  # .streamlit/secrets.toml and relative store paths resolve from the project root
    args = streamlit_args()
    os.execv(args[0], args)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())

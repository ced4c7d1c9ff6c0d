"""Runboard's Streamlit entry point: it only declares the pages and the shared chrome.

Start it with `streamlit run dashboard/app.py` (or `make run`, which also starts the worker and
`mlflow ui`). Each page is a short script in dashboard/views/.
"""
from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # streamlit puts only dashboard/ on the path
    sys.path.insert(0, str(ROOT))

from dashboard import auth, serve, ui  # noqa: E402

PAGES = {
    "Experiments": [
        ("views/runs.py", "Runs", ":material/table_rows:"),
        ("views/compare.py", "Compare", ":material/stacked_line_chart:"),
        ("views/run_detail.py", "Run detail", ":material/analytics:"),
    ],
    "Train": [("views/launch.py", "Launch", ":material/rocket_launch:"),
              ("views/data.py", "Data", ":material/dataset:")],
    "Models": [
        ("views/registry.py", "Registry", ":material/inventory_2:"),
        ("views/playground.py", "Playground", ":material/science:"),
    ],
}


def run() -> None:
    serve.client_defaults()  # `streamlit run dashboard/app.py` skips serve.main
    st.set_page_config(page_title="Runboard", page_icon=ui.favicon(), layout="wide")
    pages = {section: [st.Page(path, title=title, icon=icon, default=(path == "views/runs.py"))
                       for path, title, icon in entries]
             for section, entries in PAGES.items()}
    # declared before the sign-in form (hidden until then), so a link to a page opens that page once signed in
    current = st.navigation(pages, position="hidden" if auth.locked() else "sidebar")
    auth.gate()
    known = [page.url_path for entries in pages.values() for page in entries]
    missing = ui.unknown_page(st.context.url, st.get_option("server.baseUrlPath"), known)
    if missing:
        st.warning(f"There is no page **/{missing}**: this is {current.title}. The pages are in the sidebar.",
                   icon=":material/search_off:")
    current.run()


if __name__ == "__main__":  # streamlit runs this file as __main__; importing it runs nothing
    run()

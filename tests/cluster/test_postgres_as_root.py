"""`make cluster` run by root in a clone that other users cannot enter (root's 0700 home, a container's
workdir): PostgreSQL, which runs as the `postgres` user, gets its data in that user's home by itself,
linked from where it was asked for, and comes back from there on the next start (issue 25)."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest

from pipeline.cluster import services

pytestmark = pytest.mark.cluster


def test_a_data_folder_the_postgres_user_cannot_enter_moves_to_its_home_by_itself():
    if os.geteuid() != 0:
        pytest.skip("as another user PostgreSQL runs as that user and reaches its own folders")
    try:
        services.postgres_bin()
    except services.ServiceMissing as e:
        pytest.skip(f"needs PostgreSQL's binaries ({e})")
    private = Path(tempfile.mkdtemp(prefix="rb-root-home-", dir="/tmp"))  # 0700, like /root
    base = private / "runboard" / "mlruns" / "cluster" / "postgres"
    db = services.start_postgres(base)
    try:
        assert services.blocked_for_others(base) == private
        assert base.is_symlink() and db.dir == base.resolve() and db.dir.owner() == "postgres"
        assert db.dir.parent.owner() == "postgres"  # its own home: the database started there, below
        with psycopg.connect(db.url.replace("+psycopg", "")) as conn:
            conn.execute("CREATE TABLE kept (n int)")
        services.stop_postgres(db)
        db = services.start_postgres(base)  # the next start finds the same database through the link
        with psycopg.connect(db.url.replace("+psycopg", "")) as conn:
            assert conn.execute("SELECT count(*) FROM kept").fetchone() == (0,)
    finally:
        services.stop_postgres(db)
        shutil.rmtree(db.dir, ignore_errors=True)
        shutil.rmtree(private, ignore_errors=True)

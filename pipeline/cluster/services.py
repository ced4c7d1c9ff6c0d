"""Start and stop the services of the team setup on loopback: PostgreSQL, `mlflow server`, a Ray head.

`make cluster` and the cluster tests use these; on real machines the same services are started by
their own packages' tools (docs/cluster.md: "Several machines"). Everything binds 127.0.0.1. PostgreSQL
refuses to run as root, so as root its tools run as the `postgres` system user (runuser needs no
login session); when that user cannot reach the data folder (a clone in root's 0700 home), the data
lives in its own home instead, with a link where it was asked for. Each start returns a small record
that the matching stop takes.
"""
from __future__ import annotations

import glob
import hashlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent  # the venv's mlflow and ray commands
START_TIMEOUT = 120.0


class ServiceMissing(RuntimeError):
    """A program the setup needs is not installed; the message says how to install it."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin() -> Path:
    """Debian's newest PostgreSQL server binaries."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[-3]))
    if not found:
        raise ServiceMissing("PostgreSQL is not installed: apt-get install -y postgresql")
    return Path(found[-1]).parent


# --- PostgreSQL ----------------------------------------------------------------------------------
@dataclass
class Postgres:
    dir: Path
    port: int
    url: str  # SQLAlchemy URL with the psycopg 3 driver (the password is in it: never log it)


def _as_postgres(args: list[str]) -> None:
    command = ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{Path(args[0]).name} failed: {(done.stderr or done.stdout).strip()[-800:]}")


def start_postgres(base: Path, port: int | None = None, database: str = "runboard") -> Postgres:
    """PostgreSQL on 127.0.0.1 with its data in `base`: a new cluster with a role and a database, or the
    one an earlier start left there (its generated password kept beside it, readable by root only)."""
    pg, port = postgres_bin(), port or free_port()
    if os.geteuid() == 0:
        base = reachable_by_postgres(base)
    secret = base / "password"
    if (base / "data" / "PG_VERSION").exists() and secret.exists():
        _as_postgres([str(pg / "pg_ctl"), "-D", str(base / "data"), "-l", str(base / "server.log"), "-w", "-t", "30",
                      "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {base}", "start"])
        return Postgres(base, port, _url(secret.read_text().strip(), port, database))
    password = secrets.token_hex(16)
    base.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    base.chmod(0o700)
    _as_postgres([str(pg / "initdb"), "-D", str(base / "data"), "-U", "postgres", "--auth-local=trust",
                  "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"])
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {base}"
    _as_postgres([str(pg / "pg_ctl"), "-D", str(base / "data"), "-l", str(base / "server.log"), "-w", "-t", "30",
                  "-o", options, "start"])
    _as_postgres([str(pg / "psql"), "-h", str(base), "-p", str(port), "-U", "postgres", "-v", "ON_ERROR_STOP=1",
                  "-q", "-c", f"CREATE ROLE runboard LOGIN PASSWORD '{password}'",
                  "-c", f"CREATE DATABASE {database} OWNER runboard"])
    secret.touch(mode=0o600)
    secret.write_text(password)
    return Postgres(base, port, _url(password, port, database))


def blocked_for_others(folder: Path) -> Path | None:
    """The first folder above `folder` that users other than its owner cannot enter, if any."""
    for parent in reversed(folder.parents):
        if parent != Path("/") and parent.exists() and parent.stat().st_mode & 0o001 == 0:
            return parent
    return None


def reachable_by_postgres(base: Path) -> Path:
    """Where the `postgres` user can keep the data asked for at `base`: `base` itself when it can enter
    every folder above it, else a folder of its own home named after `base` (kept across restarts),
    linked from `base` so that the store's folder still shows where its database is."""
    if base.is_symlink():
        return base.resolve()
    blocked = blocked_for_others(base)
    if blocked is None:
        return base
    home = Path(pwd.getpwnam("postgres").pw_dir) / "runboard"
    home.mkdir(mode=0o700, exist_ok=True)
    shutil.chown(home, "postgres", "postgres")
    data = home / f"{base.name}-{hashlib.sha256(str(base.resolve()).encode()).hexdigest()[:12]}"
    base.parent.mkdir(parents=True, exist_ok=True)
    if base.exists():  # an empty folder left by an earlier try is replaced by the link; files are never moved
        base.rmdir()
    base.symlink_to(data, target_is_directory=True)
    print(f"PostgreSQL's data: {data} (the postgres user cannot enter {blocked}); linked from {base}",
          file=sys.stderr)
    return data


def _url(password: str, port: int, database: str) -> str:
    return f"postgresql+psycopg://runboard:{password}@127.0.0.1:{port}/{database}"


def stop_postgres(db: Postgres) -> None:
    try:
        _as_postgres([str(postgres_bin() / "pg_ctl"), "-D", str(db.dir / "data"), "-m", "fast", "-w", "stop"])
    except RuntimeError:
        pass  # not running


# --- process groups ------------------------------------------------------------------------------
def stop_group(process: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM a process group we started (the process and its children), SIGKILL what outlives `timeout`."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        process.poll()
        return
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # children (uvicorn workers) may outlive their parent briefly
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.poll()


def _wait_http(url: str, process: subprocess.Popen | None, what: str, ok=(200,)) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status in ok:
                    return
        except urllib.error.HTTPError as e:
            if e.code in ok:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{what} did not answer {url} within {START_TIMEOUT:.0f} s")


# --- MLflow's basic auth: a login for the tracking server ------------------------------------------
ADMIN, SERVICE = "admin", "runboard-service"  # the admin people manage users with; the worker's and jobs' account
AUTH_USERS_API = "/api/2.0/mlflow/users"


def secret_file(path: Path, make=lambda: secrets.token_urlsafe(24)) -> str:
    """A secret made once (by `make`) into a file only its owner reads (0600), then read from there on every
    later start, so what holds it keeps working."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(make())
    path.chmod(0o600)
    return path.read_text().strip()


def write_credentials(path: Path, username: str, password: str) -> Path:
    """MLflow's credentials-file format ([mlflow] mlflow_tracking_username/password), 0600: what
    RUNBOARD_MLFLOW_CREDENTIALS names (pipeline/settings.py reads it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(0o600)
    path.chmod(0o600)
    path.write_text(f"[mlflow]\nmlflow_tracking_username = {username}\nmlflow_tracking_password = {password}\n")
    return path


@dataclass
class Auth:
    folder: Path  # auth.ini (no password in it), users.db, the secrets and the credentials files, all 0600

    @property
    def admin_credentials(self) -> Path:
        return self.folder / "admin.ini"

    @property
    def service_credentials(self) -> Path:
        return self.folder / "service.ini"

    def server_env(self) -> dict[str, str]:
        """What `mlflow server --app-name basic-auth` reads: the config (no default password: the admin's is
        generated here, passed in the environment, never on a command line) and the session key."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        config = self.folder / "auth.ini"
        config.write_text("[mlflow]\ndefault_permission = READ\n"
                          f"database_uri = sqlite:///{(self.folder / 'users.db').resolve()}\n"
                          f"admin_username = {ADMIN}\n"
                          "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                          # a checked password is trusted for 60 s per server worker: without it every
                          # request pays a PBKDF2 hash (a password change reaches other workers within 60 s)
                          "auth_cache_ttl_seconds = 60\n")
        password = secret_file(self.folder / "admin-password")
        write_credentials(self.admin_credentials, ADMIN, password)
        return {"MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_AUTH_ADMIN_PASSWORD": password,
                "MLFLOW_FLASK_SERVER_SECRET_KEY": secret_file(self.folder / "flask-secret")}

    def ensure_service_account(self, url: str) -> Path:
        """The worker's and Ray jobs' MLflow user, made once by the admin (an admin itself: it creates
        experiments and registers models for everyone); its credentials file."""
        password = secret_file(self.folder / "service-password")
        admin = secret_file(self.folder / "admin-password")
        for path, body in (("/create", {"username": SERVICE, "password": password}),
                           ("/update-admin", {"username": SERVICE, "is_admin": True})):
            try:
                _auth_call(url + AUTH_USERS_API + path, body, ADMIN, admin, "PATCH" if "admin" in path else "POST")
            except urllib.error.HTTPError as e:
                if not (path == "/create" and e.code in (400, 409)):  # made by an earlier start
                    raise RuntimeError(f"mlflow server refused {path.strip('/')} of {SERVICE}: {e.code}") from None
        return write_credentials(self.service_credentials, SERVICE, password)


def _auth_call(url: str, body: dict, username: str, password: str, method: str) -> None:
    import base64
    import json

    request = urllib.request.Request(url, data=json.dumps(body).encode(), method=method, headers={
        "Content-Type": "application/json",
        "Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()})
    urllib.request.urlopen(request, timeout=30).close()


# --- an S3 API for artifacts (tests, benches): moto's standalone server ---------------------------
@dataclass
class S3Server:
    process: subprocess.Popen
    url: str      # the endpoint: MLFLOW_S3_ENDPOINT_URL
    bucket: str

    @property
    def destination(self) -> str:
        return f"s3://{self.bucket}/artifacts"

    def env(self) -> dict[str, str]:
        """What the tracking server needs to write the bucket (moto takes any key); the only process that does."""
        return {"MLFLOW_S3_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": "runboard-test",
                "AWS_SECRET_ACCESS_KEY": "runboard-test", "AWS_DEFAULT_REGION": "us-east-1"}

    def keys(self, prefix: str = "") -> list[str]:
        """The objects in the bucket: what MLflow wrote there."""
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.url, **{k.lower(): v for k, v in self.env().items()
                                                            if k.startswith("AWS_") and k != "AWS_DEFAULT_REGION"},
                          region_name="us-east-1")
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


def start_s3(bucket: str = "runboard-artifacts", log_path: Path | None = None) -> S3Server:
    """moto's S3-compatible server on loopback, with one bucket. MinIO is not in the package registries
    here; moto speaks the same S3 API that MinIO and AWS do (docs/cluster.md says how to use those)."""
    if not (BIN / "moto_server").exists():
        raise ServiceMissing("moto's server is not installed: pip install 'moto[server]'")
    port = free_port()
    with open(log_path or os.devnull, "ab") as log:
        process = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    server = S3Server(process, f"http://127.0.0.1:{port}", bucket)
    try:
        _wait_http(server.url + "/moto-api/", process, "moto_server")
        request = urllib.request.Request(f"{server.url}/{bucket}", method="PUT")
        urllib.request.urlopen(request, timeout=10).close()
    except BaseException:
        stop_group(process)
        raise
    return server


# --- MLflow tracking server ----------------------------------------------------------------------
@dataclass
class TrackingServer:
    process: subprocess.Popen
    url: str
    credentials: Path | None = None  # the service account's credentials file, when the server asks for a login


def start_tracking_server(backend_uri: str, artifacts: Path | str, port: int | None = None,
                          log_path: Path | None = None, workers: int = 2, auth: Auth | None = None,
                          artifacts_env: dict[str, str] | None = None) -> TrackingServer:
    """`mlflow server` on `backend_uri` with proxied artifacts (nodes need no shared disk, nor the bucket's keys) in
    the folder `artifacts`, or a destination URI such as s3://bucket/prefix (its endpoint and keys in
    `artifacts_env`); with `auth`, MLflow's basic-auth app: every request needs a user, and the service account
    is made."""
    port = port or free_port()
    if isinstance(artifacts, Path):
        artifacts.mkdir(parents=True, exist_ok=True)
    destination = artifacts.resolve().as_uri() if isinstance(artifacts, Path) else artifacts
    command = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--serve-artifacts",
               "--artifacts-destination", destination, "--workers", str(workers)]
    # its job runner is for MLflow's GenAI jobs, not tracking: one process less
    # the database URL (with its password) goes in the environment, not on a command line `ps` shows
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_BACKEND_STORE_URI=backend_uri)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update(artifacts_env or {})
    if auth:
        command += ["--app-name", "basic-auth"]
        env.update(auth.server_env())
    with open(log_path or os.devnull, "ab") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    server = TrackingServer(process, f"http://127.0.0.1:{port}")
    try:
        _wait_http(server.url + "/health", process, "mlflow server")
        if auth:
            server.credentials = auth.ensure_service_account(server.url)
    except BaseException:
        stop_group(process)
        raise
    return server


def stop_tracking_server(server: TrackingServer) -> None:
    stop_group(server.process)


# --- Ray head ------------------------------------------------------------------------------------
@dataclass
class RayHead:
    address: str    # the job API (the dashboard's HTTP address): what RAY_ADDRESS names
    temp_dir: Path
    gcs: str        # host:port of its GCS: what `ray start --address` on another node names
    token_file: Path  # its token (0600): what every client and node needs, RUNBOARD_RAY_TOKEN_FILE names


def ray_env() -> dict[str, str]:
    # Without RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 Ray swaps 127.0.0.1 for the host's routable address
    # and its processes listen on it; with it, everything stays on loopback.
    return dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")


def ray_token(path: Path) -> Path:
    """The cluster's Ray token file: 256 random bits as hex, as `ray get-auth-token --generate` makes them."""
    secret_file(path, lambda: secrets.token_hex(32))
    return path


def start_ray_head(temp_dir: Path, num_cpus: int = 2, num_gpus: int | None = None,
                   object_store_mb: int | None = None, *, token_file: Path) -> RayHead:
    """`ray start --head` on loopback with its job API and token authentication (the token in `token_file`,
    made there on the first start); `num_gpus` None lets Ray count them. Runboard's jobs put nothing in
    Ray's object store: a small one (`object_store_mb`) suits a test or a container."""
    dashboard_port = free_port()
    # every port free and explicit: Ray's fixed defaults (agent 52365, client 10001) clash with a second Ray
    gcs_port = free_port()
    ports = [f"--port={gcs_port}"] + [f"--{name}={free_port()}" for name in (
        "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
        "runtime-env-agent-port", "ray-client-server-port", "node-manager-port", "object-manager-port")]
    command = [str(BIN / "ray"), "start", "--head", "--node-ip-address", "127.0.0.1", *ports,
               "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard_port), "--num-cpus", str(num_cpus),
               "--include-dashboard", "true", "--disable-usage-stats", "--temp-dir", str(temp_dir)]
    if num_gpus is not None:
        command += ["--num-gpus", str(num_gpus)]
    if object_store_mb:
        command += ["--object-store-memory", str(object_store_mb * 1024 * 1024)]
    # the token's path, not the token, in the environment: Ray's processes and the jobs inherit it
    env = dict(ray_env(), RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(ray_token(token_file).resolve()))
    env.pop("RAY_AUTH_TOKEN", None)  # Ray would prefer it to the file
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=START_TIMEOUT)
    if done.returncode:
        raise RuntimeError(f"ray start failed: {(done.stderr or done.stdout).strip()[-800:]}")
    head = RayHead(f"http://127.0.0.1:{dashboard_port}", temp_dir, f"127.0.0.1:{gcs_port}", token_file.resolve())
    _wait_http(head.address + "/api/version", None, "the Ray job API", ok=(200, 401))
    return head


def stop_ray(head: RayHead, timeout: float = 8.0) -> None:
    """Stop this head's processes and everything they started (jobs included), and no other Ray on the machine.

    `ray stop` would stop every Ray of the machine; this head's processes are told apart by its temp dir
    (and its client server, which names only the GCS, by that address).
    """
    import psutil

    markers = (str(head.temp_dir), f"--address={head.gcs} ")
    me = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    roots = [p for p in psutil.process_iter(["cmdline"])
             if any(m in " ".join(p.info["cmdline"] or []) + " " for m in markers)]
    group = {p.pid: p for root in roots for p in [root, *_children(root)] if p.pid not in me}
    for process in group.values():
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(list(group.values()), timeout=timeout)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)


def _children(process) -> list:
    import psutil

    try:
        return process.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


# --- all of them ---------------------------------------------------------------------------------
@dataclass
class TeamSetup:
    db: Postgres | None = None
    server: TrackingServer | None = None
    head: RayHead | None = None
    s3: S3Server | None = None


def use_login(server: TrackingServer) -> None:
    """This process calls the server as its service account (benches and tests that talk to it directly)."""
    from pipeline import settings

    if server.credentials:
        os.environ["RUNBOARD_MLFLOW_CREDENTIALS"] = str(server.credentials)
        os.environ.pop("MLFLOW_TRACKING_PASSWORD", None)
        settings.use_tracking_credentials()


@contextmanager
def team_setup(root: Path, ray_dir: Path | None, num_cpus: int = 2, num_gpus: int | None = None,
               mlflow_port: int | None = None, logs: Path | None = None, object_store_mb: int | None = None,
               auth: bool = True, artifacts: str | None = None, s3: bool = False):
    """PostgreSQL (data in root/postgres), mlflow server (artifacts in root/artifacts, or the destination URI
    `artifacts`, or with `s3` a bucket on moto's S3 server; a login: root/auth) and, with `ray_dir`, a Ray head
    started meanwhile; all stopped, in reverse order, when the block ends."""
    setup = TeamSetup()
    try:
        with ThreadPoolExecutor(1) as pool:
            ray_started = pool.submit(start_ray_head, ray_dir, num_cpus, num_gpus, object_store_mb,
                                      token_file=root / "ray-token") if ray_dir else None
            try:
                setup.db = start_postgres(root / "postgres")
                if s3:
                    setup.s3 = start_s3(log_path=logs / "s3.log" if logs else None)
                setup.server = start_tracking_server(
                    setup.db.url, setup.s3.destination if setup.s3 else artifacts or root / "artifacts",
                    port=mlflow_port, log_path=logs / "mlflow.log" if logs else None,
                    auth=Auth(root / "auth") if auth else None, artifacts_env=setup.s3.env() if setup.s3 else None)
            finally:
                setup.head = ray_started.result() if ray_started else None
        yield setup
    finally:
        if setup.head:
            stop_ray(setup.head)
        if setup.server:
            stop_tracking_server(setup.server)
        if setup.s3:
            stop_group(setup.s3.process)
        if setup.db:
            stop_postgres(setup.db)

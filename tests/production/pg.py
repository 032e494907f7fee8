"""A throwaway PostgreSQL cluster for tests (DESIGN.md §8, notes/real-components.md).

:func:`start_pg_cluster` runs ``initdb`` and ``pg_ctl start`` from the server binaries
(``/usr/lib/postgresql/<n>/bin`` or ``$CARDPERSO_PG_BIN``) in a fresh temporary
directory, listening only on a Unix socket inside that directory (no TCP, so
parallel test workers never collide), with ``fsync=off``. PostgreSQL refuses to
run as root: when the tests run as root the directory is handed to the
``postgres`` user and every server command goes through ``runuser -u postgres --``.

The returned ``stop`` runs ``pg_ctl -m immediate stop`` on this cluster's own data
directory (never a broad process kill) and removes the directory; it is safe to
call twice and is also registered with :mod:`atexit`.

Reusable by any test package::

    from production.pg import PgCluster, start_pg_cluster, pg_binaries
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PgCluster", "PgUnavailable", "pg_binaries", "start_pg_cluster"]

PORT = 5432  # only names the socket file inside the private directory
REQUIRE_ALL_ENV = "CARDPERSO_REQUIRE_ALL"
INITDB_ARGS = ("-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync")


def _args(directory: Path, what: str) -> list[str]:
    data = ["-D", str(directory / "data"), "-w", "-t", "60"]
    if what == "stop":
        return [*data, "-m", "immediate"]
    return [*data, "-l", str(directory / "server.log")]


class PgUnavailable(RuntimeError):
    """The PostgreSQL server binaries (or a user to run them) are not on this machine."""


def pg_binaries() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``; raises :class:`PgUnavailable`.

    ``$CARDPERSO_PG_BIN``, when set, is the only place looked at.
    """
    env = os.environ.get("CARDPERSO_PG_BIN")
    candidates = [Path(env)] if env else []
    root = Path("/usr/lib/postgresql")
    if not env and root.is_dir():
        versions = sorted(
            (p for p in root.iterdir() if p.name.isdigit()), key=lambda p: int(p.name), reverse=True
        )
        candidates += [p / "bin" for p in versions]
    for found in (shutil.which("initdb"), shutil.which("pg_ctl")):
        if found and not env:
            candidates.append(Path(found).parent)
    for cand in candidates:
        if (cand / "initdb").is_file() and (cand / "pg_ctl").is_file():
            return cand
    raise PgUnavailable("PostgreSQL server binaries (initdb, pg_ctl) not found")


@dataclass
class PgCluster:
    """A running throwaway cluster; ``url`` is the maintenance database ``postgres``."""

    directory: Path
    bindir: Path
    runner: list[str]
    startup_seconds: float
    _stopped: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _names: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@/{database}?host={self.directory}&port={PORT}"

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def create_database(self, template: str | None = None) -> str:
        """A new empty database (or a copy of ``template``); returns its URL."""
        import psycopg  # the driver is a project dependency; imported late to keep this light

        name = f"t{os.getpid()}_{next(self._names)}"
        sql = f'CREATE DATABASE "{name}"'
        if template:
            sql += f' TEMPLATE "{template}" STRATEGY FILE_COPY'
        with psycopg.connect(
            host=str(self.directory), port=PORT, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(sql.encode())
        return self.url_for(name)

    @staticmethod
    def name_of(url: str) -> str:
        """The database name in a URL made by :meth:`url_for`."""
        return url.split("/", 3)[3].split("?", 1)[0]

    def drop_database(self, url: str) -> None:
        import psycopg

        name = self.name_of(url)
        with psycopg.connect(
            host=str(self.directory), port=PORT, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())

    def stop(self) -> None:
        """``pg_ctl -m immediate stop`` on this cluster, then remove its directory."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                [*self.runner, str(self.bindir / "pg_ctl"), *_args(self.directory, "stop"), "stop"],
                check=False,
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(self.directory, ignore_errors=True)


def _runner() -> tuple[list[str], int | None, int | None]:
    """Command prefix and the uid/gid that must own the cluster directory."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError as exc:
        raise PgUnavailable("running as root and there is no 'postgres' user") from exc
    if shutil.which("runuser") is None:
        raise PgUnavailable("running as root and 'runuser' is missing")
    return ["runuser", "-u", "postgres", "--"], pw.pw_uid, pw.pw_gid


def start_pg_cluster() -> tuple[str, Callable[[], None]]:
    """Start a throwaway cluster; return ``(url, stop)`` (see :func:`start_cluster`)."""
    cluster = start_cluster()
    return cluster.url, cluster.stop


def start_cluster() -> PgCluster:
    """Start a throwaway cluster and return it (about 0.7 s on a 2-core machine)."""
    t0 = time.perf_counter()
    bindir = pg_binaries()
    runner, uid, gid = _runner()
    directory = Path(tempfile.mkdtemp(prefix="cardperso-pg-"))
    cluster = PgCluster(directory, bindir, runner, 0.0)
    try:
        if uid is not None and gid is not None:
            os.chown(directory, uid, gid)
        data = directory / "data"
        _run([*runner, str(bindir / "initdb"), "-D", str(data), *INITDB_ARGS])
        opts = (
            f"-k {directory} -p {PORT} -c listen_addresses='' -c fsync=off"
            " -c full_page_writes=off -c synchronous_commit=off -c max_connections=60"
        )
        _run([*runner, str(bindir / "pg_ctl"), *_args(directory, "start"), "-o", opts, "start"])
    except BaseException:
        cluster.stop()
        raise
    cluster.startup_seconds = time.perf_counter() - t0
    atexit.register(cluster.stop)
    return cluster


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")

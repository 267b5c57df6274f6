"""Several app processes behind Debian's nginx with sticky sessions, for the tests and the
load benchmark (docs/deploy.md, section 5, has the same configuration for a hospital server).

A Streamlit session lives in the process that opened its WebSocket, and the session's uploads
(HTTP requests of their own) must reach that process too. nginx (open source) has no sticky
cookie of its own, so the configuration makes one: a request without the `livercore_route`
cookie is routed by its request id, and the response sets the cookie to that id; every later
request of that browser carries it and is routed by it (`hash ... consistent`), to the same
process. Unlike `ip_hash`, this spreads browsers that share an address (a hospital's NAT, or
all the benchmark's browsers on 127.0.0.1).

The access log records, per request, its route key and the process that served it
(`routes_by_process` reads it back): function names and ids only, no content.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
ROUTE_COOKIE = "livercore_route"

CONFIG = """\
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format route '$route_key $upstream_addr $request_method $uri';
    access_log {prefix}/access.log route;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;

    # sticky sessions: the browser's route cookie, or for its first request the request's id
    map $cookie_{cookie} $route_key {{
        ""      $request_id;
        default $cookie_{cookie};
    }}
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ""      close;
    }}
    upstream livercore {{
        hash $route_key consistent;
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 200m;          # = server.maxUploadSize
        proxy_request_buffering off;        # stream uploads instead of buffering them on disk
        proxy_max_temp_file_size 0;         # nor responses (images): memory buffers only
        location / {{
            proxy_pass http://livercore;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_read_timeout 86400;       # long-lived WebSocket
            add_header Set-Cookie "{cookie}=$route_key; Path=/; HttpOnly; SameSite=Strict" always;
        }}
    }}
}}
"""


def nginx_config(prefix: Path, port: int, app_ports: list[int]) -> str:
    servers = "\n".join(f"        server 127.0.0.1:{p};" for p in app_ports)
    return CONFIG.format(prefix=prefix, port=port, servers=servers, cookie=ROUTE_COOKIE)


def available() -> bool:
    return Path(NGINX).exists()


def start_nginx(
    prefix: Path, port: int, app_ports: list[int], *, cores: str | None = None
) -> subprocess.Popen[bytes]:
    """nginx in the foreground, its files under `prefix`, listening on 127.0.0.1:`port`, in
    front of the app processes on `app_ports`; returns once it answers."""
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_config(prefix, port, app_ports))
    command = [NGINX, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"]
    if cores is not None:
        command = ["taskset", "-c", cores, *command]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited: {proc.stderr.read().decode()[-500:] if proc.stderr else ''}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("nginx did not answer within 30 s")


def stop_nginx(proc: subprocess.Popen[bytes]) -> None:
    """Stop the nginx started by start_nginx as the app servers are stopped."""
    from tests.browser_harness import stop_server

    stop_server(proc)


def routes_by_process(prefix: Path, path_prefix: str = "/_stcore/stream") -> dict[str, set[str]]:
    """Route key -> the app processes (host:port) that served its requests under `path_prefix`
    (default the WebSocket: one per session), from the access log."""
    served: dict[str, set[str]] = defaultdict(set)
    log = prefix / "access.log"
    for line in log.read_text().splitlines() if log.exists() else []:
        parts = line.split()
        if len(parts) >= 4 and parts[3].startswith(path_prefix) and parts[1] != "-":
            served[parts[0]].add(parts[1])
    return dict(served)

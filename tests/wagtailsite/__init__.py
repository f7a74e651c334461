"""A Wagtail site as `wagtail start` makes it, on PostgreSQL with Django's pool, and a load that checks each answer.

build() generates the site from the installed Wagtail into a directory, adds
the `fhsite` app (an article page with an image, a form page, settings and a
start-up query), migrates a new database and seeds it. drive() sends a mixed
load: article pages, the admin login, and form POSTs that write. Each answer
must carry what its own request asked for (the article's title and image, the
editor's own name, the submitted value read back), so a wrong row shows.
"""

from __future__ import annotations

import http.client
import os
import random
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from forkhooks.demo.loadgen import Results

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
ARTICLES = 12
EDITORS = 8
WSGI = "fhsite.wsgi:application"
ASGI = "fhsite.asgi:application"


@dataclass
class WagtailSite:
    """A generated, migrated, seeded site: its directory and the DSN of its own database."""

    path: Path
    dsn: str
    seconds: float  # to generate, migrate and seed

    def env(self) -> dict[str, str]:
        """Environment for a server of this site (run with cwd=path)."""
        return {
            "FORKHOOKS_DSN": self.dsn,
            "DJANGO_SETTINGS_MODULE": "fhsite.settings",
            "PYTHONPATH": f"{self.path}:{ROOT}",
        }


def build(dest: Path, dsn: str, *, python: str = sys.executable, dbname: str | None = None) -> WagtailSite:
    """Generate the site in `dest` with `wagtail start`, create its database, migrate and seed it."""
    started = time.monotonic()
    dest.mkdir(parents=True, exist_ok=True)
    _run([python, "-c", "from wagtail.bin.wagtail import main; main()", "start", "mysite", "."], dest)
    shutil.copytree(HERE / "fhsite", dest / "fhsite", ignore=shutil.ignore_patterns("__pycache__"))
    dbname = dbname or f"wagtail_{secrets.token_hex(4)}"
    with psycopg.connect(dsn, autocommit=True, application_name="forkhooks-observer") as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    site = WagtailSite(dest, make_conninfo(dsn, dbname=dbname), 0.0)
    env = dict(os.environ, **site.env(), FORKHOOKS_APPLICATION_NAME="0")
    setup = (
        "import django; django.setup(); from django.core.management import call_command; "
        "call_command('makemigrations', 'fhsite', verbosity=0); call_command('migrate', verbosity=0); "
        f"from fhsite.seed import main; main({ARTICLES}, {EDITORS})"
    )
    _run([python, "-c", setup], dest, env)
    site.seconds = time.monotonic() - started
    return site


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[:3]} failed ({done.returncode}):\n{done.stderr[-3000:]}")


def drop(site: WagtailSite, dsn: str) -> None:
    """Drop the site's database (its servers must be gone)."""
    dbname = psycopg.conninfo.conninfo_to_dict(site.dsn)["dbname"]
    with psycopg.connect(dsn, autocommit=True, application_name="forkhooks-observer") as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(dbname))))


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class Client:
    """One browser: its own cookies, one request per connection (as loadgen does)."""

    def __init__(self, target: str, timeout: float) -> None:
        self.target = target
        self.timeout = timeout
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> tuple[int, str, str]:
        """(status, body, Location header); keeps the cookies the server sets."""
        if self.target.startswith("unix:"):
            conn: http.client.HTTPConnection = _UnixHTTPConnection(self.target[5:], self.timeout)
        else:
            host, _, port = self.target.rpartition(":")
            conn = http.client.HTTPConnection(host, int(port), timeout=self.timeout)
        headers = {"Connection": "close", "X-Forwarded-Port": "80"}  # what a proxy in front of a Unix socket sends
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            text = response.read().decode(errors="replace")
            for header in response.headers.get_all("Set-Cookie") or []:
                name, _, rest = header.partition("=")
                self.cookies[name.strip()] = rest.split(";", 1)[0]
            return response.status, text, response.headers.get("Location", "")
        finally:
            conn.close()


class Wrong(Exception):
    """An answer with someone else's content."""


PID = re.compile(r'<p id="pid">(\d+)</p>')


def article(client: Client, rng: random.Random) -> int:
    """GET an article page: its own title, its own image; the worker's pid."""
    n = rng.randint(1, ARTICLES)
    status, body, _ = client.request("GET", f"/article-{n:03d}/")
    _expect(status, 200, body)
    if f'<h1 id="title">Article {n:03d}</h1>' not in body or f'alt="Image {n:03d}"' not in body:
        raise Wrong(f"article {n:03d}: {body[:300]!r}")
    found = PID.search(body)
    return int(found.group(1)) if found else 0


def form_post(client: Client, rng: random.Random) -> int:
    """GET the contact form (CSRF cookie), POST a random value: the answer is the row written, read back."""
    status, body, _ = client.request("GET", "/contact/")
    _expect(status, 200, body)
    if "<h1>Contact</h1>" not in body:
        raise Wrong(f"contact page: {body[:300]!r}")
    tag = secrets.token_hex(8)
    status, body, _ = client.request(
        "POST", "/contact/", {"csrfmiddlewaretoken": client.cookies.get("csrftoken", ""), "message": tag}
    )
    _expect(status, 200, body)
    if f'"message": "{tag}"' not in body:
        raise Wrong(f"form answer for {tag}: {body[:300]!r}")
    found = re.search(r'"pid": (\d+)', body)
    return int(found.group(1)) if found else 0


def admin_login(client: Client, rng: random.Random) -> int:
    """Log in to Wagtail's admin as one editor (a session row written), then see the dashboard greet that editor."""
    n = rng.randint(1, EDITORS)
    status, body, _ = client.request("GET", "/admin/login/")
    _expect(status, 200, body)
    form = {
        "csrfmiddlewaretoken": client.cookies.get("csrftoken", ""),
        "username": f"editor{n:03d}",
        "password": "editor-password",
        "next": "/admin/",
    }
    status, body, location = client.request("POST", "/admin/login/", form)
    _expect(status, 302, body)
    status, body, _ = client.request("GET", location or "/admin/")
    _expect(status, 200, body)
    names = set(re.findall(r"Ed\d{3}x", body))
    if names != {f"Ed{n:03d}x"}:
        raise Wrong(f"dashboard of editor{n:03d} greets {sorted(names)}")
    return 0


MIX: list[Callable[[Client, random.Random], int]] = [article, article, article, form_post, admin_login]


def _expect(status: int, wanted: int, body: str) -> None:
    if status != wanted:
        raise http.client.HTTPException(f"HTTP {status}")


def drive(
    target: str,
    visits: int,
    *,
    concurrency: int = 8,
    timeout: float = 15.0,
    stop_after: int | None = None,
    seconds: float | None = None,
) -> Results:
    """Run `visits` visits (3 articles : 1 form POST : 1 admin login) from `concurrency` threads; count each answer.

    Each visit is one `request` in Results (a login is three HTTP requests, a form two); `stop_after`
    failures or wrong answers end the run early (controls); `seconds` bounds the run (benchmarks).
    """
    results = Results()
    lock = threading.Lock()
    todo = iter(range(visits))
    deadline = time.monotonic() + seconds if seconds is not None else None

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        while True:
            with lock:
                if next(todo, None) is None or (stop_after and results.failed + results.wrong >= stop_after):
                    return
                if deadline is not None and time.monotonic() >= deadline:
                    return
            visit = MIX[rng.randrange(len(MIX))]
            started = time.perf_counter()
            pid, failed, wrong = 0, False, False
            try:
                pid = visit(Client(target, timeout), rng)
            except Wrong:
                wrong = True
            except Exception as exc:
                failed = True
                error = f"{visit.__name__}: {exc}" if isinstance(exc, http.client.HTTPException) else type(exc).__name__
            with lock:
                results.requests += 1
                if failed:
                    results.failed += 1
                    results.errors[error] += 1
                elif wrong:
                    results.wrong += 1
                    results.errors[f"{visit.__name__}: wrong"] += 1
                else:
                    results.ok += 1
                    results.latencies.append(time.perf_counter() - started)
                    if pid:
                        results.pids[pid] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results

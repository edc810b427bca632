"""`bloodcount serve|worker|beat|run`: the API server, a worker, the reconciler, all three.

``run`` is what ``make run`` starts: it migrates the database, makes (or reuses, with a
new key) a demo lab, starts the three as child processes on the embedded defaults and
stops them all on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request

DEMO_LAB = "Demo Lab"


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser("serve", help="run the HTTP API (gunicorn)")
    _server_options(serve)
    serve.add_argument(
        "--workers",
        type=int,
        default=min(4, 2 * (os.cpu_count() or 1) + 1),
        help="gunicorn worker processes (default: 2 x cores + 1, at most 4)",
    )
    serve.add_argument("--threads", type=int, default=4, help="threads per worker (default 4)")
    serve.set_defaults(handler=_serve)

    worker = subparsers.add_parser("worker", help="run a Celery worker that analyses slides")
    worker.add_argument(
        "--concurrency",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes (default: one per core)",
    )
    worker.add_argument(
        "--pool",
        default="prefork",
        choices=["prefork", "solo", "threads"],
        help="Celery pool (default prefork)",
    )
    worker.add_argument("--loglevel", default="INFO")
    worker.set_defaults(handler=_worker)

    beat = subparsers.add_parser("beat", help="run the scheduler that starts the reconciler")
    beat.add_argument("--loglevel", default="INFO")
    beat.set_defaults(handler=_beat)

    run = subparsers.add_parser(
        "run", help="API, worker and reconciler on this machine, with a demo lab"
    )
    _server_options(run)
    run.add_argument(
        "--concurrency",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes (default: one per core)",
    )
    run.add_argument("--workers", type=int, default=2, help="API worker processes (default 2)")
    run.set_defaults(handler=_run)


def _server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")


def _serve(args: argparse.Namespace) -> int:
    from gunicorn.app.base import BaseApplication

    from bloodcount.config import load_settings

    settings = load_settings()  # fail here, with the variable's name, not in a worker

    class Server(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{args.host}:{args.port}")
            self.cfg.set("workers", args.workers)
            # Threads keep polling connections alive without a process per connection.
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", args.threads)
            self.cfg.set("keepalive", 5)
            self.cfg.set("graceful_timeout", 10)
            self.cfg.set("loglevel", settings.log_level.lower())
            self.cfg.set("accesslog", None)

        def load(self):
            from api import create_app

            return create_app({"SETTINGS": settings})

    Server().run()
    return 0


def _celery_app():
    from worker.celery_app import app

    return app


def _worker(args: argparse.Namespace) -> int:
    argv = [
        "worker",
        f"--concurrency={args.concurrency}",
        f"--pool={args.pool}",
        f"--loglevel={args.loglevel}",
        "--without-gossip",
        "--without-mingle",
    ]
    _celery_app().worker_main(argv)
    return 0


def _beat(args: argparse.Namespace) -> int:
    _celery_app().start(["beat", f"--loglevel={args.loglevel}"])
    return 0


def demo_lab_key() -> str:
    """Create the demo lab, or give it a new key if it exists (keys are shown only once)."""
    from bloodcount.config import load_settings
    from bloodcount.db.engine import make_engine, make_session_factory, session_scope
    from bloodcount.labs import LabError, create_lab, rotate_key

    settings = load_settings()
    engine = make_engine(settings.database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            try:
                return create_lab(session, DEMO_LAB, settings.api_key_pepper).api_key
            except LabError:
                return rotate_key(session, DEMO_LAB, settings.api_key_pepper)
    finally:
        engine.dispose()


def _wait_until_up(url: str, children: list[subprocess.Popen], seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(c.poll() is not None for c in children):
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.25)
    return False


def stop_children(children: list[subprocess.Popen], timeout: float = 15) -> None:
    """SIGTERM every child, wait for them, SIGKILL whatever is left."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _run(args: argparse.Namespace) -> int:
    from bloodcount.config import load_settings
    from bloodcount.db import migrate

    settings = load_settings()
    migrate.upgrade(settings.database_url)
    api_key = demo_lab_key()
    command = [sys.executable, "-m", "bloodcount.cli"]
    roles = [
        command
        + ["serve", "--host", args.host, "--port", str(args.port), "--workers", str(args.workers)],
        command + ["worker", "--concurrency", str(args.concurrency)],
        command + ["beat"],
    ]
    children: list[subprocess.Popen] = []
    stopping = False

    def on_signal(signum, _frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        for argv in roles:
            # Own process groups, so the terminal's Ctrl-C reaches only us; we stop them in order.
            children.append(subprocess.Popen(argv, start_new_session=True))
        host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
        url = f"http://{host}:{args.port}"
        if not _wait_until_up(url + "/healthz", children):
            print("bloodcount: the API did not start; see the messages above", file=sys.stderr)
            return 1
        print(
            f"\nbloodcount is running at {url}/  (API docs: {url}/api/v1/docs)\n"
            f"lab: {DEMO_LAB}   API key: {api_key}\n"
            "Press Ctrl-C to stop.\n",
            flush=True,
        )
        while not stopping:
            if any(c.poll() is not None for c in children):
                print("bloodcount: a component stopped; stopping the others", file=sys.stderr)
                return 1
            time.sleep(0.5)
        return 0
    finally:
        stop_children(children)

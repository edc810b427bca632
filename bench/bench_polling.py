"""Status polling: GET /api/v1/batches/{id} on `bloodcount serve` (gunicorn) over PostgreSQL,
64 concurrent connections on loopback for a bounded time, with wrk (apt-get install wrk).

    .venv/bin/python bench/bench_polling.py [--seconds 15] [--connections 64] [--rate R]

Without --rate every connection sends its next request the moment the last one is
answered: the server runs flat out and the figures are its capacity, with latency set by
the queue (64 connections / throughput). With --rate R each connection waits
connections/R seconds after every answer, so 64 pollers together offer about R requests/s:
latency at a known load, which is what a service-level target such as "p99 <= 50 ms at
1000 requests/s" speaks of. wrk's latency never includes that wait.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_service import DATA, Stack, record, rss_mb  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LUA = """wrk.headers["Authorization"] = "Bearer %s"
local pause = %d
if pause > 0 then
  delay = function() return pause end
end
done = function(summary, latency, requests)
  io.write(string.format("P99_US %%d\\n", latency:percentile(99)))
  io.write(string.format("P50_US %%d\\n", latency:percentile(50)))
end
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument(
        "--rate", type=int, default=0, help="offered requests/s in all (default: flat out)"
    )
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    stack = Stack()
    # This measures what one host can serve; the per-key rate limit (600/min by default)
    # would otherwise answer most of one key's requests with 429 and measure that instead.
    stack.env["BLOODCOUNT_RATE_LIMIT_PER_MINUTE"] = "0"
    try:
        url = stack.serve(workers=args.workers, threads=args.threads)
        headers = {"Authorization": f"Bearer {stack.key}"}
        # A 50-slide batch that stays queued (no worker): the aggregate covers every slide.
        image = next(DATA.glob("*.jpg")).read_bytes()
        files = [("files", (f"s{i}.jpg", image)) for i in range(50)]
        response = requests.post(f"{url}/api/v1/batches", headers=headers, files=files, timeout=60)
        response.raise_for_status()
        target = url + response.headers["Location"]
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            pause_ms = round(args.connections * 1000 / args.rate) if args.rate > 0 else 0
            script.write(LUA % (stack.key, pause_ms))
        result = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{args.connections}",
                f"-d{args.seconds}s",
                "--latency",
                "-s",
                script.name,
                target,
            ],
            capture_output=True,
            text=True,
            timeout=args.seconds + 60,
        )
        api_rss = rss_mb(stack.processes["serve"].pid)
    finally:
        stack.close()
    out = result.stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = int(re.search(r"P99_US (\d+)", out).group(1)) / 1000
    p50 = int(re.search(r"P50_US (\d+)", out).group(1)) / 1000
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", out)
    load = f"offered ~{args.rate} requests/s" if args.rate > 0 else "flat out"
    rate_flag = f" --rate {args.rate}" if args.rate > 0 else ""
    lines = [
        f"command: `.venv/bin/python bench/bench_polling.py --seconds {args.seconds} --connections {args.connections} --workers {args.workers} --threads {args.threads}{rate_flag}`",
        f"- GET /api/v1/batches/{{id}} (50-slide batch, PostgreSQL, gunicorn gthread {args.workers} workers x {args.threads} threads), "
        f"wrk -t2 -c{args.connections} -d{args.seconds}s, {load}: **{rate:.0f} requests/s**, p50 {p50:.1f} ms, **p99 {p99:.1f} ms** "
        f"(targets >= 1000 requests/s, p99 <= 50 ms); errors: {errors.group(0) if errors else 'none'}",
        f"- API process peak RSS after the run: {api_rss:.0f} MB (target <= 150)",
    ]
    print(out)
    print("\n".join(lines))
    if not args.no_record:
        record("bench_polling: status polling", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""gc on S3: distribution's `garbage-collect --dry-run` against `regsweep gc --dry-run` on the same
bucket in moto, directly and through a loopback proxy that adds a fixed latency per request (S3
within a region answers in ~20 ms; moto in ~1 ms, so raw moto understates what parallel listing
gains). The proxy counts requests: the count is what carries over to real S3 and to its bill.

Prints wall time, S3 requests and peak memory per run, and the ratios. Only the Python standard
library is used; moto_server, docker-registry and GNU time must be installed.
"""

import argparse
import concurrent.futures
import http.client
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

# moto checks no signature but answers anonymous reads 403: any AWS4 header will do.
AUTH = "AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proxy:
    """Forwards every request to moto, counting them and sleeping `latency` seconds first."""

    def __init__(self, upstream_port):
        self.count = 0
        self.latency = 0.0
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: with Nagle's algorithm the body waits for the
            # client's delayed ACK (40 ms) on every keep-alive request.
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def forward(self):
                with proxy.lock:
                    proxy.count += 1
                if proxy.latency:
                    time.sleep(proxy.latency)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=300)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)) if self.command != "HEAD" else resp.getheader("Content-Length", "0"))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self):
        return f"http://127.0.0.1:{self.port}"


def upload_tree(moto_port, bucket, root, prefix):
    files = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            files.append((path, prefix + "/" + os.path.relpath(path, root)))

    def put(item):
        path, key = item
        with open(path, "rb") as f:
            data = f.read()
        # urllib labels a body application/x-www-form-urlencoded by default; moto (werkzeug) then
        # parses it as a form and stores zero bytes, which is what broke distribution's collector
        # here before ("invalid checksum digest format": every link file was empty).
        req = urllib.request.Request(f"http://127.0.0.1:{moto_port}/{bucket}/{key}", data=data, method="PUT",
                                     headers={"Authorization": AUTH, "Content-Type": "application/octet-stream"})
        urllib.request.urlopen(req).read()

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(put, files))
    return len(files)


def timed(cmd, env, limit=None):
    """Runs cmd under GNU time; returns (seconds, peak RSS in MiB, stdout, finished). A failing tool
    stops the benchmark: a collector that gave up early would look fast. With a limit (seconds), a
    run still going then is stopped: finished is False, the peak RSS unknown (None) and stdout what
    it printed so far, so that the figures become lower bounds."""
    out = tempfile.NamedTemporaryFile(delete=False)
    out.close()
    stdout = tempfile.TemporaryFile()
    start = time.monotonic()
    proc = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", out.name] + cmd, env=env,
                            stdout=stdout, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=limit)
        finished = True
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        _, stderr = proc.communicate()
        finished = False
    wall = time.monotonic() - start
    stdout.seek(0)
    text = stdout.read().decode(errors="replace")
    rss = None
    if finished:
        with open(out.name) as f:
            rss = int(f.read().strip().splitlines()[-1]) / 1024
        if proc.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {stderr.decode()[-2000:]}{text[-500:]}")
    os.unlink(out.name)
    return wall, rss, text, finished


def distribution_progress(stdout):
    """How many repositories distribution's mark phase has started on, from its stdout."""
    return len({line.split(":", 1)[0] for line in stdout.splitlines() if ": marking " in line})


def distribution_would_delete(stdout):
    m = re.search(r"(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible for deletion", stdout)
    if not m:
        sys.exit("cannot find distribution's summary line in its output")
    return int(m.group(2))


def regsweep_would_delete(stdout):
    report = json.loads(stdout)
    if report["outcome"] not in ("dry-run", "swept"):
        sys.exit(f"regsweep gc did not collect: outcome {report['outcome']}, problems {report['problems'][:3]}")
    return len(report["blobs"]), report


class Moto:
    """A fresh moto_server with one bucket holding the tree under `reg/`, behind a counting proxy."""

    def __init__(self, tree, bucket="bench"):
        self.port = free_port()
        self.proc = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/").read()
                break
            except Exception:
                time.sleep(0.1)
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{self.port}/{bucket}", method="PUT")).read()
        started = time.monotonic()
        self.objects = upload_tree(self.port, bucket, os.path.join(tree, "root"), "reg")
        print(f"uploaded {self.objects:,} objects into moto in {time.monotonic() - started:.0f} s", file=sys.stderr)
        self.proxy = Proxy(self.port)
        self.env = dict(os.environ, AWS_ENDPOINT_URL=self.proxy.url(), AWS_ACCESS_KEY_ID="x",
                        AWS_SECRET_ACCESS_KEY="y", AWS_REGION="us-east-1", AWS_ALLOW_HTTP="true")

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def regsweep_cmd(binary, flags):
    return [binary, "gc", "--grace", "0", "--json"] + flags + ["s3://bench/reg"]


class Run:
    """One collector's figures in one setting. `kind` says how far they are measured: "measured",
    "estimated" (from the raw run) or "stopped" (at the time limit: time and requests are lower
    bounds, the peak memory and what it would delete unknown)."""

    def __init__(self, wall, requests, rss, doomed, kind="measured", progress=None):
        self.wall, self.requests, self.rss, self.doomed, self.kind, self.progress = (
            wall, requests, rss, doomed, kind, progress)

    def cell(self):
        if self.kind == "stopped":
            return (f"> {self.wall:.0f} s (stopped at repository {self.progress}), > {self.requests:,}, -, -")
        mark = " (estimated)" if self.kind == "estimated" else ""
        rss = f"{self.rss:.0f}" if self.rss is not None else "-"
        return f"{self.wall:.1f} s{mark}, {self.requests:,}, {rss}, {self.doomed:,}"


def compare(args):
    moto = Moto(args.tree)
    proxy = moto.proxy
    limit = args.distribution_limit_min * 60 if args.distribution_limit_min else None
    try:
        config = os.path.join(args.tree, "s3-config.yml")
        with open(config, "w") as f:
            f.write("version: 0.1\nlog:\n  level: error\nstorage:\n  s3:\n    region: us-east-1\n"
                    f"    regionendpoint: {proxy.url()}\n    bucket: bench\n    accesskey: x\n    secretkey: y\n"
                    "    secure: false\n    v4auth: true\n    rootdirectory: /reg\n  delete:\n    enabled: true\n"
                    "http:\n  addr: 127.0.0.1:0\n")
        # distribution's AWS SDK panics with AWS_CA_BUNDLE set: a minimal environment.
        dist_env = {"PATH": os.environ.get("PATH", "")}
        rows = []
        # Mode by mode, so that a run stopped early has printed complete figures for the first mode.
        for mode, flag in (("default", []), ("--delete-untagged", ["--delete-untagged"])):
            for label, latency in (("moto", 0.0), (f"moto + {args.latency_ms:g} ms/request", args.latency_ms / 1000)):
                proxy.latency = latency
                results = {}
                # regsweep first: with a time limit on distribution, its figures decide the bound.
                for tool, cmd, env in (
                    ("regsweep", regsweep_cmd(args.bin, ["--dry-run"] + flag), moto.env),
                    ("distribution", [args.registry, "garbage-collect", "--dry-run"] + flag + [config], dist_env),
                ):
                    if tool == "distribution" and latency and args.distribution_latency == "estimate":
                        # distribution sends one request at a time (mark and sweep are sequential):
                        # through the proxy it takes its raw time plus one latency per request.
                        raw = next(r for r in rows if r[0] == "moto" and r[1] == mode)[2][tool]
                        if raw.kind == "stopped":
                            kind, progress = "stopped", raw.progress
                        else:
                            kind, progress = "estimated", None
                        results[tool] = Run(raw.wall + raw.requests * latency, raw.requests, raw.rss, raw.doomed,
                                            kind, progress)
                        print(f"  {time.strftime('%H:%M:%S')} {label} {mode} {tool}: {results[tool].cell()} "
                              f"({kind} from the raw run)", file=sys.stderr, flush=True)
                        continue
                    before = proxy.count
                    wall, rss, out, finished = timed(cmd, env, limit if tool == "distribution" else None)
                    count = proxy.count - before
                    if not finished:
                        results[tool] = Run(wall, count, None, None, "stopped", f"{distribution_progress(out)}")
                    elif tool == "distribution":
                        results[tool] = Run(wall, count, rss, distribution_would_delete(out))
                    else:
                        results[tool] = Run(wall, count, rss, regsweep_would_delete(out)[0])
                    print(f"  {time.strftime('%H:%M:%S')} {label} {mode} {tool}: {results[tool].cell()}",
                          file=sys.stderr, flush=True)
                rows.append((label, mode, results))
        # Last, for real: the dry runs changed nothing, so this bucket is still a copy of the tree.
        proxy.latency = args.latency_ms / 1000
        before = proxy.count
        wall, rss, out, _ = timed(regsweep_cmd(args.bin, ["--delete-untagged"]), moto.env)
        deleted, report = regsweep_would_delete(out)
        real = (wall, proxy.count - before, rss, deleted, len(report["failures"]), report["stats"])
    finally:
        moto.stop()

    s = real[5]
    print(f"tree: {s['repositories']} repositories, {s['tags']} tags, {s['manifests']} manifests, {s['blobs']:,} blobs, "
          f"{moto.objects:,} objects; {os.cpu_count()} cores shared with other work")
    print()
    print("| storage | mode | distribution: s, requests, MiB, would delete | regsweep: s, requests, MiB, would delete "
          "| speed-up | requests ratio |")
    print("|---|---|---|---|---|---|")
    for label, mode, r in rows:
        d, o = r["distribution"], r["regsweep"]
        at_least = ">= " if d.kind == "stopped" else ""
        print(f"| {label} | {mode} | {d.cell()} | {o.cell()} | {at_least}{d.wall / o.wall:.1f}x | "
              f"{at_least}1/{d.requests / max(o.requests, 1):.1f} |")
    if any(r[2]["distribution"].kind == "estimated" for r in rows):
        print("\n(estimated) = distribution's raw-moto time plus one latency per request it sent: it sends one at a "
              "time.")
    if any(r[2]["distribution"].kind == "stopped" for r in rows):
        print(f"\n(stopped) = distribution was stopped after the time limit ({args.distribution_limit_min:g} min) "
              f"before it finished: its time and request count so far are lower bounds, and so are the ratios (>=).")
    print("\nwould delete = blobs. With --delete-untagged the counts differ where distribution 2.8 is wrong (it "
          "deletes the children of tagged multi-arch images and the referrers of kept images).")
    print(f"\nregsweep gc --delete-untagged for real (through the latency proxy): {real[0]:.1f} s, {real[1]:,} "
          f"requests, {real[2]:.0f} MiB, {real[3]:,} blobs deleted, {real[4]} failures")


def scaling(args):
    """regsweep gc --dry-run on raw moto for trees of growing size: time and peak memory per blob,
    extrapolated linearly to 1 M blobs."""
    points = []
    for tree in args.tree:
        moto = Moto(tree)
        try:
            wall, rss, out, _ = timed(regsweep_cmd(args.bin, ["--dry-run"]), moto.env)
            _, report = regsweep_would_delete(out)
            points.append((report["stats"]["blobs"], moto.objects, wall, rss, moto.proxy.count))
            print(f"  {points[-1]}", file=sys.stderr)
        finally:
            moto.stop()
    print("| blobs | objects | regsweep gc --dry-run (raw moto) | peak memory | requests |")
    print("|---|---|---|---|---|")
    for blobs, objects, wall, rss, count in points:
        print(f"| {blobs:,} | {objects:,} | {wall:.1f} s | {rss:.0f} MiB | {count:,} |")
    if len(points) >= 2:
        (b0, _, w0, m0, _), (b1, _, w1, m1, _) = points[0], points[-1]
        per_blob = (m1 - m0) / (b1 - b0)
        print(f"\nmemory: {per_blob * 1024:.2f} KiB per added blob; 1 M blobs ~ {m1 + per_blob * (1_000_000 - b1):.0f} MiB "
              f"(linear extrapolation from the largest point)")
        if len(points) >= 3:
            # Small trees have fewer repositories than the 32 listings and workers running at once:
            # the step between the two largest is closer to what each further blob costs.
            (bp, _, _, mp, _) = points[-2]
            tail = (m1 - mp) / (b1 - bp)
            print(f"memory between the two largest points: {tail * 1024:.2f} KiB per added blob; 1 M blobs ~ "
                  f"{m1 + tail * (1_000_000 - b1):.0f} MiB")
        print(f"time: x{w1 / w0:.1f} for x{b1 / b0:.1f} the blobs (moto's listing cost grows with the bucket, so this "
              f"overstates the growth on real S3)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True, help="the regsweep binary (release build)")
    parser.add_argument("--tree", required=True, action="append",
                        help="folder written by bench/gc/gen_storage.py (several with --scaling)")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--registry", default=shutil.which("docker-registry") or "docker-registry")
    parser.add_argument("--distribution-latency", choices=("run", "estimate"), default="run",
                        help="run distribution through the latency proxy, or estimate it from its raw run "
                             "(it is sequential; the proxied runs take hours at full size)")
    parser.add_argument("--distribution-limit-min", type=float, default=None,
                        help="stop each distribution run after this many minutes and report lower bounds")
    parser.add_argument("--scaling", action="store_true", help="time and memory of regsweep over the given trees")
    args = parser.parse_args()
    if args.scaling:
        scaling(args)
    else:
        args.tree = args.tree[0]
        compare(args)


if __name__ == "__main__":
    main()

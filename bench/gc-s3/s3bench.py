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
        req = urllib.request.Request(f"http://127.0.0.1:{moto_port}/{bucket}/{key}", data=data, method="PUT",
                                     headers={"Authorization": AUTH})
        urllib.request.urlopen(req).read()

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(put, files))
    return len(files)


def timed(cmd, env):
    """Runs cmd under GNU time; returns (seconds, peak RSS in MiB, stdout)."""
    out = tempfile.NamedTemporaryFile(delete=False)
    out.close()
    start = time.monotonic()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", out.name] + cmd, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wall = time.monotonic() - start
    with open(out.name) as f:
        rss = int(f.read().strip().splitlines()[-1]) / 1024
    os.unlink(out.name)
    if proc.returncode not in (0, 1):
        sys.exit(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return wall, rss, proc.stdout.decode()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True, help="the regsweep binary (release build)")
    parser.add_argument("--tree", required=True, help="folder written by bench/gc/gen_storage.py")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--registry", default=shutil.which("docker-registry") or "docker-registry")
    args = parser.parse_args()

    moto_port = free_port()
    moto = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(moto_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{moto_port}/").read()
                break
            except Exception:
                time.sleep(0.1)
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{moto_port}/bench", method="PUT")).read()
        started = time.monotonic()
        n = upload_tree(moto_port, "bench", os.path.join(args.tree, "root"), "reg")
        print(f"uploaded {n} objects into moto in {time.monotonic() - started:.0f} s", file=sys.stderr)
        proxy = Proxy(moto_port)
        config = os.path.join(args.tree, "s3-config.yml")
        with open(config, "w") as f:
            f.write("version: 0.1\nlog:\n  level: error\nstorage:\n  s3:\n    region: us-east-1\n"
                    f"    regionendpoint: {proxy.url()}\n    bucket: bench\n    accesskey: x\n    secretkey: y\n"
                    "    secure: false\n    v4auth: true\n    rootdirectory: /reg\n  delete:\n    enabled: true\n"
                    "http:\n  addr: 127.0.0.1:0\n")
        # distribution's AWS SDK panics with AWS_CA_BUNDLE set: a minimal environment.
        dist_env = {"PATH": os.environ.get("PATH", "")}
        ours_env = dict(os.environ, AWS_ENDPOINT_URL=proxy.url(), AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y",
                        AWS_REGION="us-east-1", AWS_ALLOW_HTTP="true")
        rows = []
        for label, latency in (("moto", 0.0), (f"moto + {args.latency_ms:g} ms/request", args.latency_ms / 1000)):
            proxy.latency = latency
            for mode, flag in (("default", []), ("--delete-untagged", ["--delete-untagged"])):
                results = {}
                for tool, cmd, env in (
                    ("distribution", [args.registry, "garbage-collect", "--dry-run"] + flag + [config], dist_env),
                    ("regsweep", [args.bin, "gc", "--dry-run", "--grace", "0", "-q"] + flag + ["s3://bench/reg"], ours_env),
                ):
                    before = proxy.count
                    wall, rss, _ = timed(cmd, env)
                    results[tool] = (wall, proxy.count - before, rss)
                rows.append((label, mode, results))
        proxy.latency = args.latency_ms / 1000
        before = proxy.count
        wall, rss, out = timed([args.bin, "gc", "--grace", "0", "--delete-untagged", "--json", "s3://bench/reg"], ours_env)
        report = json.loads(out)
        real = (wall, proxy.count - before, rss, len(report["blobs"]), len(report["failures"]))
    finally:
        moto.kill()
        moto.wait()

    print(f"| storage | mode | distribution: s, requests, MiB | regsweep: s, requests, MiB | speed-up | requests ratio |")
    print("|---|---|---|---|---|---|")
    for label, mode, r in rows:
        d, o = r["distribution"], r["regsweep"]
        print(f"| {label} | {mode} | {d[0]:.2f} s, {d[1]:,}, {d[2]:.1f} | {o[0]:.2f} s, {o[1]:,}, {o[2]:.1f} | "
              f"{d[0] / o[0]:.1f}x | 1/{d[1] / max(o[1], 1):.1f} |")
    print(f"\nregsweep gc --delete-untagged for real (through the latency proxy): {real[0]:.2f} s, {real[1]:,} requests, "
          f"{real[2]:.1f} MiB, {real[3]:,} blobs deleted, {real[4]} failures")


if __name__ == "__main__":
    main()

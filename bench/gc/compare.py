#!/usr/bin/env python3
"""Time `docker-registry garbage-collect --dry-run` against `regsweep gc --dry-run` on one tree.

Both modes (default and --delete-untagged); per tool one untimed warm-up run, then RUNS timed runs
back to back (as hyperfine does), so that each reads the page cache it warmed itself. Wall time and peak RSS come from
`/usr/bin/time` (GNU time). Prints medians, ratios, and what each tool would delete.

Only the Python standard library is used.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

GNU_TIME = "/usr/bin/time"


def timed(cmd, stdout_path):
    """Runs cmd under GNU time; returns (wall seconds, peak RSS KiB, exit code)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as t, open(stdout_path, "wb") as out:
        proc = subprocess.run(
            [GNU_TIME, "-f", "%e %M", "-o", t.name] + cmd,
            stdout=out,
            stderr=subprocess.DEVNULL,
        )
        wall, rss = t.read().split()[-2:]
        return float(wall), int(rss), proc.returncode


def distribution_counts(path):
    with open(path, errors="replace") as f:
        text = f.read()
    m = re.search(r"(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible for deletion", text)
    if not m:
        sys.exit(f"cannot find distribution's summary line in {path}")
    return {"blobs": int(m.group(2)), "manifests": int(m.group(3))}


def regsweep_counts(path):
    with open(path) as f:
        report = json.load(f)
    return {
        "blobs": len(report["blobs"]),
        "manifests": len(report["manifests"]),
        "bytes": report["freed_bytes"],
        "stats": report["stats"],
        "outcome": report["outcome"],
    }


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True, help="the regsweep binary (release build)")
    parser.add_argument("--config", required=True, help="config.yml of the generated tree")
    parser.add_argument("--registry", default=shutil.which("docker-registry") or "docker-registry")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if not os.path.exists(GNU_TIME):
        sys.exit("GNU time is needed for peak memory: apt-get install -y time")
    if not shutil.which(args.registry):
        sys.exit("docker-registry not found: apt-get install -y docker-registry")

    work = tempfile.mkdtemp(prefix="regsweep-gc-bench-")
    results = []
    for mode, flags in (("default", []), ("--delete-untagged", ["--delete-untagged"])):
        tools = {
            "docker-registry garbage-collect": [args.registry, "garbage-collect", "--dry-run"] + flags + [args.config],
            "regsweep gc": [args.bin, "gc", "--dry-run", "--json"] + flags + [args.config],
        }
        outputs = {name: os.path.join(work, f"{name.split()[0]}{len(flags)}.out") for name in tools}
        samples = {name: [] for name in tools}
        # As hyperfine does: per tool, one untimed warm-up run, then all its runs back to back,
        # so that each tool is measured with the page cache it warmed itself.
        for name, cmd in tools.items():
            timed(cmd, outputs[name])
            for _ in range(args.runs):
                wall, rss, code = timed(cmd, outputs[name])
                if code != 0:
                    sys.exit(f"{name} failed with exit code {code}; see {outputs[name]}")
                samples[name].append((wall, rss))
        theirs = distribution_counts(outputs["docker-registry garbage-collect"])
        ours = regsweep_counts(outputs["regsweep gc"])
        row = {"mode": mode}
        for name, values in samples.items():
            row[name] = (statistics.median(w for w, _ in values), max(r for _, r in values))
        row["counts"] = (theirs, ours)
        results.append(row)

    stats = results[0]["counts"][1]["stats"]
    print(
        f"tree: {stats['repositories']} repositories, {stats['tags']} tags, {stats['manifests']} manifests, "
        f"{stats['layer_links']} layer links, {stats['blobs']} blobs; {args.runs} runs per tool, "
        f"median wall time, largest peak RSS; {os.cpu_count()} cores"
    )
    print()
    print(f"{'mode':<19} {'tool':<33} {'wall':>8} {'peak RSS':>11}   would delete")
    for row in results:
        theirs, ours = row["counts"]
        d_wall, d_rss = row["docker-registry garbage-collect"]
        r_wall, r_rss = row["regsweep gc"]
        print(
            f"{row['mode']:<19} {'docker-registry garbage-collect':<33} {d_wall:>7.2f}s {mib(d_rss):>11}   "
            f"{theirs['blobs']} blobs, {theirs['manifests']} manifests"
        )
        print(
            f"{'':<19} {'regsweep gc':<33} {r_wall:>7.2f}s {mib(r_rss):>11}   "
            f"{ours['blobs']} blobs ({ours['bytes']} bytes), {ours['manifests']} manifests"
        )
        speed = d_wall / r_wall if r_wall > 0 else float("inf")
        print(f"{'':<19} {'ratio':<33} {speed:>7.1f}x {r_rss / d_rss:>10.2f}x   (speed-up; memory regsweep/distribution)")
    print()
    print(
        "Counts differ with --delete-untagged where distribution 2.8 is wrong: it deletes the children of "
        "tagged multi-arch images and the referrers (signatures, SBOMs) of kept images; regsweep keeps them."
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

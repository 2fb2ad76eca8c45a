#!/usr/bin/env python3
"""Generate a large distribution storage tree for the gc benchmark.

Writes OUT/root/docker/registry/v2/... byte for byte as distribution 2.8 lays it out (link files
hold the digest without newline, blobs under a two-hex fan-out), plus OUT/config.yml for
`docker-registry garbage-collect` and `regsweep gc`.

Content per repository (names are nested, e.g. team-3/svc-12): Docker v2 and OCI images sharing
base layers across repositories, tags moved to newer builds (leaving untagged manifests in the tag
history), multi-arch images (Docker manifest lists and OCI indexes, children pushed by digest),
cosign-style `sha256-<hex>.sig` tags, OCI 1.1 referrers with `subject`, manifests deleted through
the API (empty revision folders), orphan uploads (blob + `_layers` link, never referenced) and
orphan blobs without any link. Every file is dated three days back, so no grace period applies.

Only the Python standard library is used.
"""

import argparse
import hashlib
import json
import os
import random
import sys
import time

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

PLATFORMS = [("linux", "amd64"), ("linux", "arm64"), ("linux", "s390x"), ("linux", "ppc64le")]


class Tree:
    def __init__(self, root, rng):
        self.v2 = os.path.join(root, "docker", "registry", "v2")
        self.rng = rng
        self.blobs = {}  # digest -> size
        self.files = 0

    def _write(self, rel, data):
        path = os.path.join(self.v2, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        self.files += 1

    def blob(self, data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if digest not in self.blobs:
            hexd = digest[7:]
            self._write(f"blobs/sha256/{hexd[:2]}/{hexd}/data", data)
            self.blobs[digest] = len(data)
        return digest, len(data)

    def random_blob(self, min_size=64, max_size=512):
        return self.blob(self.rng.randbytes(self.rng.randint(min_size, max_size)))

    def link_layer(self, repo, digest):
        self._write(f"repositories/{repo}/_layers/sha256/{digest[7:]}/link", digest.encode())

    def link_revision(self, repo, digest):
        self._write(f"repositories/{repo}/_manifests/revisions/sha256/{digest[7:]}/link", digest.encode())

    def tag(self, repo, tag, digest):
        base = f"repositories/{repo}/_manifests/tags/{tag}"
        self._write(f"{base}/index/sha256/{digest[7:]}/link", digest.encode())
        self._write(f"{base}/current/link", digest.encode())

    def delete_manifest_via_api(self, repo, digest, tags):
        """What DELETE /v2/<repo>/manifests/<digest> does: unlink the revision (its folder stays
        empty) and remove every tag currently pointing at it."""
        os.remove(os.path.join(self.v2, f"repositories/{repo}/_manifests/revisions/sha256/{digest[7:]}/link"))
        for tag in tags:
            base = os.path.join(self.v2, f"repositories/{repo}/_manifests/tags/{tag}")
            for dirpath, dirnames, filenames in os.walk(base, topdown=False):
                for name in filenames:
                    os.remove(os.path.join(dirpath, name))
                os.rmdir(dirpath)

    def manifest(self, repo, doc):
        data = json.dumps(doc, separators=(",", ":")).encode()
        digest, size = self.blob(data)
        self.link_revision(repo, digest)
        return digest, size


def build_image(tree, repo, fmt, base_layers, unique_layers, subject=None):
    """An image manifest: config + some shared base layers + unique layers, all linked."""
    rng = tree.rng
    config_type, layer_type, manifest_type = (
        (DOCKER_CONFIG, DOCKER_LAYER, DOCKER_MANIFEST) if fmt == "docker" else (OCI_CONFIG, OCI_LAYER, OCI_MANIFEST)
    )
    config_data = json.dumps(
        {"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z", "nonce": rng.getrandbits(64)}
    ).encode()
    config, config_size = tree.blob(config_data)
    tree.link_layer(repo, config)
    layers = []
    for digest in base_layers:
        tree.link_layer(repo, digest)
        layers.append({"mediaType": layer_type, "digest": digest, "size": tree.blobs[digest]})
    for _ in range(unique_layers):
        digest, size = tree.random_blob()
        tree.link_layer(repo, digest)
        layers.append({"mediaType": layer_type, "digest": digest, "size": size})
    doc = {
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {"mediaType": config_type, "digest": config, "size": config_size},
        "layers": layers,
    }
    if subject is not None:
        doc["subject"] = {"mediaType": OCI_MANIFEST, "digest": subject[0], "size": subject[1]}
    digest, size = tree.manifest(repo, doc)
    return digest, size, manifest_type


def build_index(tree, repo, fmt, base_layers, children_count, unique_layers):
    manifests = []
    for os_name, arch in PLATFORMS[:children_count]:
        digest, size, mtype = build_image(tree, repo, fmt, base_layers, unique_layers)
        manifests.append(
            {"mediaType": mtype, "digest": digest, "size": size, "platform": {"os": os_name, "architecture": arch}}
        )
    doc = {"schemaVersion": 2, "mediaType": DOCKER_LIST if fmt == "docker" else OCI_INDEX, "manifests": manifests}
    digest, size = tree.manifest(repo, doc)
    return digest, size, [m["digest"] for m in manifests]


def signature(tree, repo, subject_digest, subject_size, with_subject):
    """A cosign-style signature (tagged sha256-<hex>.sig) or an OCI 1.1 referrer (untagged, with
    `subject`)."""
    empty, empty_size = tree.blob(b"{}")
    tree.link_layer(repo, empty)
    payload, payload_size = tree.blob(
        json.dumps({"critical": {"image": {"docker-manifest-digest": subject_digest}}, "n": tree.rng.random()}).encode()
    )
    tree.link_layer(repo, payload)
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
        "config": {"mediaType": OCI_EMPTY, "digest": empty, "size": empty_size},
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "digest": payload, "size": payload_size}],
    }
    if with_subject:
        doc["subject"] = {"mediaType": OCI_MANIFEST, "digest": subject_digest, "size": subject_size}
    digest, _ = tree.manifest(repo, doc)
    if not with_subject:
        tree.tag(repo, "sha256-" + subject_digest[7:] + ".sig", digest)
    return digest


def generate(out, repos, images, seed):
    rng = random.Random(seed)
    root = os.path.join(out, "root")
    if os.path.exists(os.path.join(root, "docker")):
        sys.exit(f"{root} already holds a registry tree; pass an empty --out folder")
    tree = Tree(root, rng)
    base_pool = [tree.random_blob(256, 1024)[0] for _ in range(60)]
    counts = {"repositories": 0, "tags": 0, "untagged": 0, "indexes": 0, "orphans": 0, "api_deleted": 0}

    for r in range(repos):
        repo = f"team-{r % 17}/svc-{r}" if r % 3 else f"svc-{r}"
        counts["repositories"] += 1
        fmt = "docker" if r % 2 else "oci"
        base = rng.sample(base_pool, 3)
        tags = {}
        for i in range(images):
            kind = rng.random()
            if kind < 0.15:
                digest, size, children = build_index(tree, repo, fmt, base, rng.randint(2, 3), 2)
                counts["indexes"] += 1
            else:
                digest, size, _ = build_image(tree, repo, fmt, base, rng.randint(2, 5))
            tag = f"1.{i}.0"
            tree.tag(repo, tag, digest)
            tags[tag] = digest
            # Most tags move on: a rebuild replaces the manifest, leaving the old one untagged.
            for rebuild in range(rng.randint(0, 2)):
                digest, size, _ = build_image(tree, repo, fmt, base, rng.randint(1, 3))
                tree.tag(repo, tag, digest)
                tags[tag] = digest
                counts["untagged"] += 1
            if rng.random() < 0.3:
                signature(tree, repo, digest, size, with_subject=rng.random() < 0.5)
        # `latest` aliases the newest tag.
        tree.tag(repo, "latest", tags[f"1.{images - 1}.0"])
        # A build pushed by digest only (CI scratch), never tagged.
        build_image(tree, repo, fmt, base, 2)
        counts["untagged"] += 1
        # Delete one tagged image through the API (if it is not also `latest`).
        victim_tag = "1.0.0"
        victim = tags[victim_tag]
        if victim != tags[f"1.{images - 1}.0"]:
            tree.delete_manifest_via_api(repo, victim, [t for t, d in tags.items() if d == victim])
            counts["api_deleted"] += 1
        # Orphan uploads: blob + link, no manifest.
        for _ in range(rng.randint(1, 4)):
            digest, _ = tree.random_blob()
            tree.link_layer(repo, digest)
            counts["orphans"] += 1
        os.makedirs(os.path.join(tree.v2, f"repositories/{repo}/_uploads"), exist_ok=True)
        counts["tags"] += len(tags) + 1

    # Orphan blobs no repository links (left by earlier repository deletions).
    for _ in range(max(50, repos)):
        tree.random_blob()
        counts["orphans"] += 1

    # Date everything three days back, so that the default grace period does not apply.
    when = time.time() - 3 * 86400
    for dirpath, dirnames, filenames in os.walk(tree.v2):
        for name in filenames:
            os.utime(os.path.join(dirpath, name), (when, when))
        os.utime(dirpath, (when, when))

    config = os.path.join(out, "config.yml")
    with open(config, "w") as f:
        f.write(
            "version: 0.1\n"
            "log:\n  level: error\n"
            "storage:\n"
            f"  filesystem:\n    rootdirectory: {os.path.abspath(root)}\n"
            "  delete:\n    enabled: true\n"
            "http:\n  addr: 127.0.0.1:0\n"
        )
    counts["blobs"] = len(tree.blobs)
    counts["files"] = tree.files
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="empty folder to write root/ and config.yml into")
    parser.add_argument("--repos", type=int, default=240, help="number of repositories (default 240)")
    parser.add_argument("--images", type=int, default=12, help="tags per repository (default 12)")
    parser.add_argument("--scale", type=int, default=1, help="multiply the number of repositories")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    started = time.time()
    counts = generate(args.out, args.repos * args.scale, args.images, args.seed)
    counts["seconds"] = round(time.time() - started, 1)
    print(json.dumps(counts))


if __name__ == "__main__":
    main()

"""Print the manifest paths a full `du` scan GETs: every tag of every repository and every child
of every index, once per repository. Standard library only; talks to a loopback registry."""
import json
import sys
import urllib.parse
import urllib.request

ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])


def get(base, path):
    req = urllib.request.Request(base + path, headers={"Accept": ACCEPT})
    with urllib.request.urlopen(req) as resp:
        return resp.read(), resp.headers


def catalog(base):
    path = "/v2/_catalog"
    while path:
        body, headers = get(base, path)
        yield from json.loads(body)["repositories"] or []
        link = headers.get("Link")
        path = link.split(">")[0].lstrip("<") if link else None


def main():
    base = sys.argv[1].rstrip("/")
    for repo in catalog(base):
        body, _ = get(base, f"/v2/{repo}/tags/list")
        children = set()
        for tag in json.loads(body)["tags"] or []:
            path = f"/v2/{repo}/manifests/{tag}"
            print(path)
            manifest, _ = get(base, path)
            for child in json.loads(manifest).get("manifests") or []:
                children.add(child["digest"])
        for digest in sorted(children):
            print(f"/v2/{repo}/manifests/{digest}")


if __name__ == "__main__":
    main()

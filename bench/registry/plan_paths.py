"""Print the DELETE path of every manifest deletion in a regsweep plan (stdin)."""
import json
import sys

plan = json.load(sys.stdin)
for repo in plan["repositories"]:
    for action in repo["actions"]:
        if action["type"] == "delete-manifest":
            print(f"/v2/{repo['repository']}/manifests/{action['digest']}")

#!/usr/bin/env python3
"""Checks the workspace's crate graph against the rule in docs/architecture.md: each crate may
depend (normal and build dependencies; dev-dependencies are free) only on the workspace crates
listed for it in docs/crate-deps.txt, so dependencies point down and a new edge is a decision
someone wrote down. Run by `make lint` (and so by CI).

docs/crate-deps.txt: one line per crate, `crate @layer: dep dep ...` (an empty list is allowed);
`#` starts a comment. Every workspace crate must have a line, and every dependency a lower layer.
"""
import json
import subprocess
import sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
allowed_file = root / "docs" / "crate-deps.txt"


def read_allowed():
    allowed, layers = {}, {}
    for number, line in enumerate(allowed_file.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        head, sep, deps = line.partition(":")
        name, at, layer = head.partition("@")
        if not sep or not at or not layer.strip().isdigit():
            sys.exit(f"{allowed_file}:{number}: expected `crate @layer: dep dep ...`, got `{line}`")
        allowed[name.strip()] = set(deps.split())
        layers[name.strip()] = int(layer)
    for name, deps in allowed.items():
        for dep in deps:
            if dep not in layers:
                sys.exit(f"{allowed_file}: `{name}` lists `{dep}`, which has no line")
            if layers[dep] >= layers[name]:
                sys.exit(
                    f"{allowed_file}: `{name}` (layer {layers[name]}) lists `{dep}` (layer {layers[dep]}): "
                    "a crate uses only crates in lower layers"
                )
    return allowed


def main():
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--no-deps", "--offline"],
            cwd=root, check=True, capture_output=True, text=True,
        ).stdout
    )
    members = {p["name"]: p for p in meta["packages"]}
    allowed = read_allowed()
    problems = []
    for name in sorted(members):
        if name not in allowed:
            problems.append(f"`{name}` has no line in {allowed_file.name}: add `{name}: <its allowed workspace deps>`")
            continue
        used = {
            d["name"]
            for d in members[name]["dependencies"]
            if d["name"] in members and d.get("kind") != "dev"
        }
        for dep in sorted(used - allowed[name]):
            problems.append(
                f"`{name}` depends on `{dep}`, which {allowed_file.name} does not allow: "
                "dependencies point down (docs/architecture.md); move the shared part lower, "
                "or write the new edge down if it is meant"
            )
    for name in sorted(set(allowed) - set(members)):
        problems.append(f"{allowed_file.name} names `{name}`, which is not a workspace crate: remove its line")
    for p in problems:
        print(f"check-deps: {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"check-deps: {len(members)} crates, every dependency allowed by {allowed_file.name}")


main()

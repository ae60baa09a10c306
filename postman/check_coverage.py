#!/usr/bin/env python3
"""Fails when a documented endpoint has no request in the Postman collection: every operation of
openapi/renewgate.json (ACME excluded) and every Keyfactor route of src/api/keyfactor/mod.rs
(the Keyfactor dialect's routes, documented in the README)."""
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def norm(method, path):
    path = re.sub(r"\{\{[^}]+\}\}|\{[^}]+\}", "{}", path.split("?")[0])
    return method.upper(), path.rstrip("/").lower()


def collection_requests(items):
    for i in items:
        if "item" in i:
            yield from collection_requests(i["item"])
        else:
            r = i["request"]
            yield norm(r["method"], "/" + "/".join(r["url"]["path"]))


def main():
    have = set(collection_requests(json.loads((REPO / "postman/renewgate.postman_collection.json").read_text())["item"]))
    want = set()
    doc = json.loads((REPO / "openapi/renewgate.json").read_text())
    for path, ops in doc["paths"].items():
        if path.lower().startswith("/acme"):
            continue
        for method in ops:
            if method in ("get", "put", "post", "delete", "patch"):
                want.add(norm(method, path))
    kf = (REPO / "src/api/keyfactor/mod.rs").read_text()
    for path, method in re.findall(r'\.route\(\s*"([^"]+)",\s*web::(\w+)\(\)', kf):
        want.add(norm(method, path))
    missing = sorted(want - have)
    for m, p in missing:
        print(f"FATAL: no Postman request for {m} {p}", file=sys.stderr)
    if missing:
        return 1
    print(f"Postman coverage: all {len(want)} documented operations have a request ({len(have)} distinct in the collection)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Checks that every RENEWGATE_* variable a compose file (and the Dockerfile's ENV) sets is one the
binary reads. The known names are derived from the source, never listed here:

- the settings tree of crates/renewgate-core/src/settings.rs (`Settings` and the structs its fields name, recursively):
  `RENEWGATE_` + the key path upper-cased with `__` between levels (the `config` crate's rule,
  see `Settings::load`); `#[serde(skip)]` fields are not settings;
- clap arguments with `env = "RENEWGATE_…"` anywhere under src/ or crates/ (the agent's RENEWGATE_AGENT__*);
- direct reads `env::var("RENEWGATE_…")` / `var_os(…)` under src/ and crates/.

Usage: check-compose-env.py [--list] [--dockerfile Dockerfile] COMPOSE_CONFIG_YAML
(the output of `docker-compose config`, so interpolation and extends are already resolved).
"""
import argparse
import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
STRUCT_RE = re.compile(r"pub struct (\w+)\s*\{(.*?)\n\}", re.S)
FIELD_RE = re.compile(r"^\s*pub (\w+)\s*:\s*([^,]+),", re.M)


def strip_wrappers(t):
    t = t.strip()
    while True:
        m = re.fullmatch(r"(?:Option|Vec|Box)<(.+)>", t)
        if not m:
            return t
        t = m.group(1).strip()


def settings_names(config_rs):
    text = config_rs.read_text()
    structs = {}
    for name, body in STRUCT_RE.findall(text):
        fields = []
        skip_next = False
        for line in body.splitlines():
            s = line.strip()
            if s.startswith("#[serde(") and "skip" in s:
                skip_next = True
                continue
            m = FIELD_RE.match(line)
            if m:
                if not skip_next:
                    fields.append((m.group(1), strip_wrappers(m.group(2))))
                skip_next = False
        structs[name] = fields
    if "Settings" not in structs:
        sys.exit(f"FATAL: no `pub struct Settings` in {config_rs}: the check cannot derive the settings")

    names = set()

    def walk(struct, path):
        for field, ty in structs[struct]:
            if ty in structs:
                walk(ty, path + [field])
            else:
                names.add("RENEWGATE_" + "__".join(path + [field]).upper())

    walk("Settings", [])
    return names


def source_names(src):
    names = set()
    for f in src.rglob("*.rs"):
        text = f.read_text()
        names.update(re.findall(r'\benv\s*=\s*"(RENEWGATE_[A-Z0-9_]+)"', text))
        names.update(re.findall(r'\bvar(?:_os)?\(\s*"(RENEWGATE_[A-Z0-9_]+)"\s*\)', text))
    return names


def compose_vars(doc):
    found = []
    for svc, spec in (doc.get("services") or {}).items():
        env = (spec or {}).get("environment") or {}
        items = env.items() if isinstance(env, dict) else (e.split("=", 1)[0:1] + [None] for e in env)
        for k, _ in items:
            if k.startswith("RENEWGATE_"):
                found.append((f"service {svc}", k))
    return found


def dockerfile_vars(path):
    found = []
    text = re.sub(r"\\\n", " ", path.read_text())
    for line in text.splitlines():
        m = re.match(r"\s*ENV\s+(.*)", line, re.I)
        if m:
            for k in re.findall(r"(?:^|\s)(RENEWGATE_[A-Z0-9_]+)[=\s]", m.group(1) + " "):
                found.append((str(path.name), k))
    return found


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("compose_config", nargs="?")
    ap.add_argument("--dockerfile")
    ap.add_argument("--list", action="store_true", help="print the known names and exit")
    a = ap.parse_args()
    core = REPO / "crates" / "renewgate-core" / "src"
    known = settings_names(core / "settings.rs") | source_names(REPO / "src") | source_names(core)
    if a.list:
        print("\n".join(sorted(known)))
        return 0
    used = []
    if a.compose_config:
        used += compose_vars(yaml.safe_load(Path(a.compose_config).read_text()))
    if a.dockerfile:
        used += dockerfile_vars(Path(a.dockerfile))
    if not used:
        print("FATAL: no RENEWGATE_* variable found to check", file=sys.stderr)
        return 1
    bad = [(where, k) for where, k in used if k not in known]
    for where, k in bad:
        print(f"FATAL: {where} sets {k}, which the binary does not read", file=sys.stderr)
    if bad:
        print(f"known variables ({len(known)}): {', '.join(sorted(known))}", file=sys.stderr)
        return 1
    print(f"{len(used)} RENEWGATE_* settings checked against {len(known)} variables the binary reads")
    return 0


if __name__ == "__main__":
    sys.exit(main())

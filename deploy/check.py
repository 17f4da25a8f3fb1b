"""Consistency checks of deploy/kubernetes that a schema cannot see.

python deploy/check.py path/to/customer-service

- every file a kustomization names exists;
- probes use the container's port; the liveness probe uses the health
  service that stays SERVING through database outages;
- terminationGracePeriodSeconds covers the preStop pause plus the drain;
- every ConfigMap key is a variable the binary reads (per `serve --help`);
- the example tokens file has the shape the binary expects.
"""

import os
import re
import subprocess
import sys
import tomllib

import yaml

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kubernetes")
failures = []


def check(ok, message):
    if not ok:
        failures.append(message)


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def main(binary):
    docs = {}
    for folder, _, files in os.walk(ROOT):
        for name in files:
            if name.endswith(".yaml"):
                path = os.path.join(folder, name)
                docs[path] = load(path)
                if name == "kustomization.yaml":
                    k = docs[path][0]
                    named = k.get("resources", []) + [p["path"] for p in k.get("patches", [])]
                    named += [f for g in k.get("secretGenerator", []) for f in g.get("files", [])]
                    for item in named:
                        check(os.path.exists(os.path.join(folder, item)), f"{path}: {item} does not exist")

    base = os.path.join(ROOT, "base")
    [deployment] = docs[os.path.join(base, "deployment.yaml")]
    [config] = docs[os.path.join(base, "configmap.yaml")]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    port = container["ports"][0]["containerPort"]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        check(container[probe]["grpc"]["port"] == port, f"{probe} does not use port {port}")
    check(container["livenessProbe"]["grpc"].get("service") == "liveness", "livenessProbe must ask for service liveness")
    check(config["data"]["LISTEN_ADDR"].endswith(f":{port}"), "LISTEN_ADDR does not match the container port")
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = int(config["data"]["DRAIN_TIMEOUT_SECS"])
    grace = pod["terminationGracePeriodSeconds"]
    check(grace >= pause + drain + 5, f"terminationGracePeriodSeconds {grace} < preStop {pause} + drain {drain} + 5")

    help_text = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True, check=True).stdout
    known = set(re.findall(r"\[env: ([A-Z_]+)=", help_text)) | {"RUST_LOG"}
    for key in config["data"]:
        check(key in known, f"ConfigMap key {key} is not read by the binary")

    with open(os.path.join(ROOT, "overlays", "example", "tokens.toml"), "rb") as f:
        principals = tomllib.load(f)["principals"]
    for p in principals:
        check("token_sha256" in p or "client_cert_subject" in p, f"principal {p['name']}: no way in")
        if "token_sha256" in p:
            check(re.fullmatch(r"[0-9a-f]{64}", p["token_sha256"]) is not None, f"principal {p['name']}: bad hash")
        check(set(p["permissions"]) <= {"read", "write", "delete", "import", "intake", "hub", "admin"},
              f"principal {p['name']}: unknown permission")

    for f in failures:
        print("FAIL", f)
    print(f"checked {len(docs)} manifests: {'ok' if not failures else f'{len(failures)} problems'}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main(sys.argv[1])

#!/usr/bin/env python3
"""Checks the Kubernetes manifests of deploy/k8s (run by scripts/check-manifests.sh).

1. Every YAML file under deploy/ parses (every document).
2. Every Kubernetes object validates, strictly (unknown fields are errors), against the
   published OpenAPI schemas that kubernetes-validate ships (offline), for the oldest and the
   newest Kubernetes version named below.
3. A LeaderWorkerSet (a custom resource: no schema ships with Kubernetes) gets a structural
   check of its spec against the LWS v1 API, and its leader and worker pod templates validate
   strictly as core PodTemplateSpecs.
4. House rules for every pod template: non-root, seccomp RuntimeDefault, no privilege
   escalation, read-only root filesystem, all capabilities dropped, CPU and memory requests and
   limits, liveness and readiness probes wired to endpoints the coordinator serves, the cluster
   secret from the Secret, a termination grace period above the coordinator's drain grace; and
   the coordinator lists as many workers as the manifests run.

Prints one line per object and per failure; exits 1 on any failure. --self-test plants faults
in copies of the documents (MUTATIONS) and fails unless every one is caught.
    check_manifests.py [--k8s-versions 1.28,1.37] [--self-test] DIR...
"""
import argparse
import os
import re
import sys

import kubernetes_validate
import yaml

SECRET_NAME = "emserve-cluster-secret"
# what coordinator/http_server.c and coordinator/rpc_server.c serve (checked against the source
# by check-manifests.sh: the route table and the health service names)
HTTP_LIVE, HTTP_READY = "/health", "/health/ready"
GRPC_LIVE, GRPC_READY = "liveness", "readiness"
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

# LeaderWorkerSet v1 (leaderworkerset.x-k8s.io/v1): the fields of its spec, from the API
# reference (https://lws.sigs.k8s.io/docs/reference/leaderworkerset.v1)
LWS_SPEC = {"replicas", "leaderWorkerTemplate", "rolloutStrategy", "startupPolicy", "networkConfig"}
LWS_TEMPLATE = {"leaderTemplate", "workerTemplate", "size", "restartPolicy", "subGroupPolicy",
                "volumeClaimTemplates"}
LWS_RESTART = {"RecreateGroupOnPodRestart", "RecreateGroupAfterStart", "None"}
LWS_STARTUP = {"LeaderCreated", "LeaderReady"}
LWS_SUBDOMAIN = {"Shared", "UniquePerReplica"}
LWS_ROLLOUT = {"type", "rollingUpdateConfiguration"}
LWS_ROLLING = {"maxUnavailable", "maxSurge", "partition"}


class Checker:
    def __init__(self, versions, verbose=True, quiet=False):
        self.versions = versions
        self.verbose = verbose
        self.quiet = quiet
        self.failures = 0

    def fail(self, where, msg):
        if not self.quiet:
            print(f"FAIL {where}: {msg}")
        self.failures += 1

    # ---- schemas ---------------------------------------------------------------------------

    def schema(self, where, obj):
        for v in self.versions:
            try:
                kubernetes_validate.validate(obj, v, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                self.fail(where, f"k8s {v}: {path}: {e.message}")
                return False
            except kubernetes_validate.SchemaNotFoundError as e:
                self.fail(where, e.message)
                return False
        return True

    def pod_template_schema(self, where, template):
        wrapped = {"apiVersion": "v1", "kind": "PodTemplate",
                   "metadata": {"name": "check"}, "template": template}
        return self.schema(where, wrapped)

    def lws_structure(self, where, obj):
        if obj.get("apiVersion") != "leaderworkerset.x-k8s.io/v1":
            self.fail(where, f"apiVersion {obj.get('apiVersion')!r}, want leaderworkerset.x-k8s.io/v1")
        extra = set(obj) - {"apiVersion", "kind", "metadata", "spec"}
        if extra:
            self.fail(where, f"unknown top-level fields {sorted(extra)}")
        name = (obj.get("metadata") or {}).get("name", "")
        if not DNS1123.match(name) or len(name) > 63:
            self.fail(where, f"metadata.name {name!r} is not a DNS-1123 label")
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            self.fail(where, "spec missing")
            return None
        for k in sorted(set(spec) - LWS_SPEC):
            self.fail(where, f"spec.{k}: unknown field")
        if not isinstance(spec.get("replicas", 1), int) or spec.get("replicas", 1) < 0:
            self.fail(where, "spec.replicas: want an integer >= 0")
        if spec.get("startupPolicy", "LeaderCreated") not in LWS_STARTUP:
            self.fail(where, f"spec.startupPolicy: want one of {sorted(LWS_STARTUP)}")
        sub = (spec.get("networkConfig") or {}).get("subdomainPolicy", "Shared")
        if sub not in LWS_SUBDOMAIN:
            self.fail(where, f"spec.networkConfig.subdomainPolicy: want one of {sorted(LWS_SUBDOMAIN)}")
        ro = spec.get("rolloutStrategy") or {}
        for k in sorted(set(ro) - LWS_ROLLOUT):
            self.fail(where, f"spec.rolloutStrategy.{k}: unknown field")
        if ro.get("type", "RollingUpdate") != "RollingUpdate":
            self.fail(where, "spec.rolloutStrategy.type: want RollingUpdate")
        for k in sorted(set(ro.get("rollingUpdateConfiguration") or {}) - LWS_ROLLING):
            self.fail(where, f"spec.rolloutStrategy.rollingUpdateConfiguration.{k}: unknown field")
        t = spec.get("leaderWorkerTemplate")
        if not isinstance(t, dict):
            self.fail(where, "spec.leaderWorkerTemplate missing")
            return None
        for k in sorted(set(t) - LWS_TEMPLATE):
            self.fail(where, f"spec.leaderWorkerTemplate.{k}: unknown field")
        size = t.get("size", 1)
        if not isinstance(size, int) or size < 1:
            self.fail(where, "spec.leaderWorkerTemplate.size: want an integer >= 1")
        if t.get("restartPolicy", "RecreateGroupOnPodRestart") not in LWS_RESTART:
            self.fail(where, f"spec.leaderWorkerTemplate.restartPolicy: want one of {sorted(LWS_RESTART)}")
        if "workerTemplate" not in t:
            self.fail(where, "spec.leaderWorkerTemplate.workerTemplate missing (required)")
        for k in ("leaderTemplate", "workerTemplate"):
            if k in t:
                self.pod_template_schema(f"{where} {k}", t[k])
        return t

    # ---- house rules -------------------------------------------------------------------------

    def pod_rules(self, where, template):
        spec = (template or {}).get("spec") or {}
        psc = spec.get("securityContext") or {}
        if psc.get("runAsNonRoot") is not True:
            self.fail(where, "securityContext.runAsNonRoot must be true")
        if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            self.fail(where, "securityContext.seccompProfile.type must be RuntimeDefault")
        if spec.get("automountServiceAccountToken") is not False:
            self.fail(where, "automountServiceAccountToken must be false (no API access needed)")
        secret_vols = {v["name"] for v in spec.get("volumes", [])
                       if (v.get("secret") or {}).get("secretName") == SECRET_NAME}
        if not secret_vols:
            self.fail(where, f"no volume from the Secret {SECRET_NAME}")
        for c in spec.get("containers", []):
            cw = f"{where} container {c.get('name')}"
            if c.get("name") == "coordinator":
                env = {e.get("name"): e.get("value") for e in c.get("env", [])}
                grace = int(env.get("EMSERVE_DRAIN_GRACE_MS") or 5000)
                if spec.get("terminationGracePeriodSeconds", 30) * 1000 <= grace:
                    self.fail(cw, f"terminationGracePeriodSeconds does not cover the drain grace {grace} ms")
            sc = c.get("securityContext") or {}
            if sc.get("allowPrivilegeEscalation") is not False:
                self.fail(cw, "allowPrivilegeEscalation must be false")
            if sc.get("readOnlyRootFilesystem") is not True:
                self.fail(cw, "readOnlyRootFilesystem must be true")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                self.fail(cw, "capabilities.drop must hold ALL")
            res = c.get("resources") or {}
            for part in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in (res.get(part) or {}):
                        self.fail(cw, f"resources.{part}.{r} missing")
            for p in ("livenessProbe", "readinessProbe"):
                if p not in c:
                    self.fail(cw, f"{p} missing")
            self.probe_rules(cw, c)
            if not any(m.get("name") in secret_vols for m in c.get("volumeMounts", [])):
                self.fail(cw, f"does not mount the Secret {SECRET_NAME}")

    def probe_rules(self, where, c):
        want = {"livenessProbe": (HTTP_LIVE, GRPC_LIVE), "readinessProbe": (HTTP_READY, GRPC_READY)}
        ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
        for kind, (path, service) in want.items():
            p = c.get(kind) or {}
            if "httpGet" in p and p["httpGet"].get("path") != path:
                self.fail(where, f"{kind}.httpGet.path {p['httpGet'].get('path')!r}, want {path}")
            if "grpc" in p and p["grpc"].get("service") != service:
                self.fail(where, f"{kind}.grpc.service {p['grpc'].get('service')!r}, want {service}")
            for probe in ("httpGet", "tcpSocket", "grpc"):
                port = (p.get(probe) or {}).get("port")
                if isinstance(port, str) and port not in ports:
                    self.fail(where, f"{kind}.{probe}.port {port!r} is not a named port")
                elif isinstance(port, int) and port not in ports.values():
                    self.fail(where, f"{kind}.{probe}.port {port} is not a container port")


def worker_addrs(template):
    """The --worker-addr flags of the coordinator container of a pod template."""
    n = 0
    for c in ((template or {}).get("spec") or {}).get("containers", []):
        for a in c.get("args", []) + c.get("command", []):
            n += a.startswith("--worker-addr")
        for e in c.get("env", []):
            if e.get("name") == "EMSERVE_WORKER_ADDR" and e.get("value"):
                n += len(e["value"].split(","))
    return n


def load_all(paths):
    docs, bad = [], []
    for root in paths:
        for d, _, files in sorted(os.walk(root)):
            for f in sorted(files):
                if not f.endswith((".yaml", ".yml")):
                    continue
                p = os.path.join(d, f)
                try:
                    with open(p) as fh:
                        for i, doc in enumerate(yaml.safe_load_all(fh)):
                            if doc is not None:
                                docs.append((f"{p}#{i}", doc))
                except yaml.YAMLError as e:
                    bad.append((p, str(e).replace("\n", " ")))
    return docs, bad


def check_docs(ck, docs):
    """Runs every check over the loaded documents; returns the number of Kubernetes objects."""
    n_k8s = 0
    # per directory (a variant): workers run vs workers the coordinator lists
    run, listed = {}, {}
    for where, obj in docs:
        if not isinstance(obj, dict) or "kind" not in obj or "apiVersion" not in obj:
            continue  # plain YAML (parsed above), not a Kubernetes object
        n_k8s += 1
        d = os.path.dirname(where.split("#")[0])
        name = f"{where} {obj['kind']}/{(obj.get('metadata') or {}).get('name')}"
        kind = obj["kind"]
        if kind == "LeaderWorkerSet":
            t = ck.lws_structure(name, obj)
            if t:
                for k in ("leaderTemplate", "workerTemplate"):
                    if k in t:
                        ck.pod_rules(f"{name} {k}", t[k])
                n = worker_addrs(t.get("leaderTemplate"))
                if n != t.get("size", 1) - 1:
                    ck.fail(name, f"the leader lists {n} workers, the group has size-1 = {t.get('size', 1) - 1}")
        else:
            ck.schema(name, obj)
            if kind in ("Deployment", "StatefulSet"):
                tpl = obj["spec"]["template"]
                ck.pod_rules(name, tpl)
                comp = ((tpl.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/component")
                if comp == "worker":
                    run[d] = run.get(d, 0) + obj["spec"].get("replicas", 1)
                elif comp == "coordinator":
                    listed[d] = listed.get(d, 0) + worker_addrs(tpl)
        if ck.verbose:
            print(f"checked {name}")
    for d in sorted(set(run) | set(listed)):
        if run.get(d, 0) != listed.get(d, 0):
            ck.fail(d, f"{run.get(d, 0)} worker replicas but the coordinator lists {listed.get(d, 0)}")
    return n_k8s


def find(docs, kind):
    return next(o for _, o in docs if isinstance(o, dict) and o.get("kind") == kind)


def first_container(tpl):
    return tpl["spec"]["containers"][0]


def lws_tpl(docs, k):
    return find(docs, "LeaderWorkerSet")["spec"]["leaderWorkerTemplate"][k]


# Faults each of which the checks must catch (the self-test: a check that cannot fail is none).
MUTATIONS = [
    ("unknown field in a StatefulSet", lambda d: find(d, "StatefulSet")["spec"].update(replica=2)),
    ("wrong type in a Deployment", lambda d: find(d, "Deployment")["spec"].update(replicas="one")),
    ("typo in a probe", lambda d: first_container(find(d, "Deployment")["spec"]["template"]).update(
        readinesProbe=first_container(find(d, "Deployment")["spec"]["template"]).pop("readinessProbe"))),
    ("writable root filesystem", lambda d: first_container(find(d, "StatefulSet")["spec"]["template"])
        ["securityContext"].update(readOnlyRootFilesystem=False)),
    ("root allowed", lambda d: find(d, "Deployment")["spec"]["template"]["spec"]["securityContext"]
        .pop("runAsNonRoot")),
    ("capabilities kept", lambda d: first_container(find(d, "StatefulSet")["spec"]["template"])
        ["securityContext"].pop("capabilities")),
    ("no memory limit", lambda d: first_container(find(d, "Deployment")["spec"]["template"])
        ["resources"]["limits"].pop("memory")),
    ("liveness on a path not served", lambda d: first_container(find(d, "Deployment")["spec"]["template"])
        ["livenessProbe"].update(httpGet={"path": "/healthz", "port": "http"})),
    ("gRPC readiness on another service", lambda d: first_container(lws_tpl(d, "leaderTemplate"))
        ["readinessProbe"].update(grpc={"port": 50051, "service": "liveness"})),
    ("3 workers run, 2 listed", lambda d: find(d, "StatefulSet")["spec"].update(replicas=3)),
    ("LWS size 4, 2 listed", lambda d: find(d, "LeaderWorkerSet")["spec"]["leaderWorkerTemplate"]
        .update(size=4)),
    ("LWS unknown field", lambda d: find(d, "LeaderWorkerSet")["spec"].update(startupPolicyy="x")),
    ("LWS bad restart policy", lambda d: find(d, "LeaderWorkerSet")["spec"]["leaderWorkerTemplate"]
        .update(restartPolicy="Always")),
    ("LWS no worker template", lambda d: find(d, "LeaderWorkerSet")["spec"]["leaderWorkerTemplate"]
        .pop("workerTemplate")),
    ("LWS worker template: unknown pod field", lambda d: lws_tpl(d, "workerTemplate")["spec"]
        .update(hostnetwork=True)),
    ("LWS leader template: bad container field", lambda d: first_container(lws_tpl(d, "leaderTemplate"))
        .update(ports=[{"containerPort": "grpc"}])),
    ("grace period under the drain", lambda d: find(d, "Deployment")["spec"]["template"]["spec"]
        .update(terminationGracePeriodSeconds=5)),
    ("secret not mounted", lambda d: first_container(find(d, "StatefulSet")["spec"]["template"])
        .update(volumeMounts=[])),
]


def self_test(versions, docs):
    """Every mutation of MUTATIONS must make the checks fail; returns the number that did not."""
    import copy
    missed = 0
    for what, mutate in MUTATIONS:
        d = copy.deepcopy(docs)
        mutate(d)
        ck = Checker(versions, verbose=False, quiet=True)
        check_docs(ck, d)
        print(f"self-test: {what}: {'caught' if ck.failures else 'NOT CAUGHT'} ({ck.failures} failure(s))")
        missed += ck.failures == 0
    return missed


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k8s-versions", default="1.28,1.37",
                    help="Kubernetes versions to validate against (comma-separated)")
    ap.add_argument("--self-test", action="store_true",
                    help="also check that each of a list of faults planted in copies is caught")
    ap.add_argument("dirs", nargs="+")
    a = ap.parse_args()
    versions = a.k8s_versions.split(",")
    ck = Checker(versions)
    docs, bad = load_all(a.dirs)
    for p, e in bad:
        ck.fail(p, f"YAML does not parse: {e}")
    n_k8s = check_docs(ck, docs)
    print(f"check_manifests: {len(docs)} YAML documents, {n_k8s} Kubernetes objects, "
          f"{ck.failures} failure(s) (schemas of Kubernetes {', '.join(ck.versions)})")
    missed = 0
    if a.self_test:
        missed = self_test(versions, docs)
        print(f"check_manifests self-test: {len(MUTATIONS) - missed} of {len(MUTATIONS)} planted faults caught")
    return 1 if ck.failures or missed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""A stand-in for the Kubernetes API server, on 127.0.0.1, for measuring the
control plane's memory and writes at scale on a machine without etcd or
kube-apiserver (bench/cluster-scale.sh drives it).

It serves what the router's components ask of an API server: paginated
LISTs and WATCHes of every kind (an empty list for kinds it holds none of),
GET/POST/PUT of Leases, server-side-apply PATCHes of `/status` (conditions
merged by type, other fields replaced, each write sent to the kind's open
watches as MODIFIED, as an API server would), Events, and /version. It
checks no schema, no RBAC and no resourceVersion conflicts: it is a
registry with watches, not a validator. Numbers measured against it say how
the components behave against an API server that answers at once; the
end-to-end scale test on a real cluster (tests/tests/e2e_scale.rs) is the
measurement of record.

Usage: fake-apiserver.py PORT SERVICES [ROUTES_PER_SERVICE=4] [DISCOVERED=0|1]
  The fleet has the shape of router_tests::fleet (tests/src/fleet.rs), on loopback addresses: one VPC, one
  ready VPCAttachment and one VPCService per service, ROUTES_PER_SERVICE
  VPCRoutes per service. DISCOVERED=1 gives every VPCService the status
  service-discovery would write (one ready endpoint), for a gateway measured alone.
  GET /fake/stats answers the count of status writes and whether every route is
  Accepted and Programmed.
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

NAMESPACE = "default"
lock = threading.Condition()
version = [1]
# plural -> {(namespace, name): object}
store = {}
# plural -> list of (condition, queue) of open watches
watches = {}
status_writes = [0]

KINDS = {
    "vpcs": ("galactic.datumapis.com/v1alpha", "VPC"),
    "vpcattachments": ("galactic.datumapis.com/v1alpha", "VPCAttachment"),
    "vpcservices": ("router.datum.net/v1alpha1", "VPCService"),
    "vpcroutes": ("router.datum.net/v1alpha1", "VPCRoute"),
    "servicebindings": ("router.datum.net/v1alpha1", "ServiceBinding"),
    "tunnelbindings": ("router.datum.net/v1alpha1", "TunnelBinding"),
    "vpcingresses": ("router.datum.net/v1alpha1", "VPCIngress"),
    "vpcegresses": ("router.datum.net/v1alpha1", "VPCEgress"),
    "locations": ("networking.datumapis.com/v1alpha", "Location"),
    "pods": ("v1", "Pod"),
    "services": ("v1", "Service"),
    "nodes": ("v1", "Node"),
    "secrets": ("v1", "Secret"),
    "endpointslices": ("discovery.k8s.io/v1", "EndpointSlice"),
    "leases": ("coordination.k8s.io/v1", "Lease"),
    "events": ("events.k8s.io/v1", "Event"),
}


def next_version():
    version[0] += 1
    return str(version[0])


def put(plural, obj):
    api_version, kind = KINDS[plural]
    obj.setdefault("apiVersion", api_version)
    obj.setdefault("kind", kind)
    meta = obj.setdefault("metadata", {})
    if plural != "nodes":
        meta.setdefault("namespace", NAMESPACE)
    meta.setdefault("uid", f"uid-{plural}-{meta.get('name')}")
    meta.setdefault("generation", 1)
    meta.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
    meta["resourceVersion"] = next_version()
    store.setdefault(plural, {})[(meta.get("namespace"), meta["name"])] = obj
    return obj


def fleet(services, routes_per_service, discovered):
    # Loopback addresses: nothing measured through this fleet may reach beyond the machine.
    put("vpcs", {"metadata": {"name": "vpc"}, "spec": {"networks": ["127.0.0.0/8"]},
                 "status": {"ready": True, "identifier": "0a1b2c3d4e5f"}})
    for i in range(services):
        address = f"127.{i // 65536 % 256 + 1}.{i // 256 % 256}.{i % 256}"
        put("vpcattachments", {"metadata": {"name": f"att-{i}"},
                               "spec": {"vpc": {"name": "vpc"}, "interface": {"name": "galactic0", "addresses": [f"{address}/8"]}},
                               "status": {"ready": True, "identifier": f"{i:04x}"}})
        service = {"metadata": {"name": f"svc-{i}"},
                   "spec": {"vpcAttachmentRef": {"name": f"att-{i}"}, "port": 8080, "protocol": "HTTP"}}
        if discovered:
            service["status"] = {
                "conditions": [condition("Discovered", "ResolvedRefs"), condition("Ready", "EndpointsReady")],
                "vpc": {"name": "vpc", "identifier": "0a1b2c3d4e5f"},
                "endpoints": [{"address": address, "port": 8080, "attachment": f"att-{i}", "ready": True}],
                "readyEndpoints": 1,
            }
        put("vpcservices", service)
        for p in range(routes_per_service):
            put("vpcroutes", {"metadata": {"name": f"route-{i}-{p}"},
                              "spec": {"hostnames": [f"svc-{i}.example.com"], "matches": [{"pathPrefix": f"/p{p}"}],
                                       "destinations": [{"vpcServiceRef": {"name": f"svc-{i}"}}]}})


def condition(type_, reason):
    return {"type": type_, "status": "True", "reason": reason, "message": "", "observedGeneration": 1,
            "lastTransitionTime": "2026-01-01T00:00:00Z"}


def merge_status(current, applied):
    """Server-side apply of a status, roughly: conditions merge by type, other fields replace."""
    merged = dict(current or {})
    for key, value in (applied or {}).items():
        if key == "conditions":
            by_type = {c["type"]: c for c in merged.get("conditions", [])}
            for c in value:
                by_type[c["type"]] = c
            merged["conditions"] = list(by_type.values())
        else:
            merged[key] = value
    return merged


def notify(plural, event_type, obj):
    line = json.dumps({"type": event_type, "object": obj}).encode() + b"\n"
    for q in watches.get(plural, []):
        q.append(line)
    lock.notify_all()


def parse_path(path):
    """(plural, namespace, name, subresource) of an API path, or None."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"]:
        parts = parts[2:]
    elif parts[:1] == ["apis"]:
        parts = parts[3:]
    else:
        return None
    namespace = None
    if parts[:1] == ["namespaces"] and len(parts) >= 3:
        namespace, parts = parts[1], parts[2:]
    if not parts or parts[0] not in KINDS:
        return None
    return parts[0], namespace, parts[1] if len(parts) > 1 else None, parts[2] if len(parts) > 2 else None


def routes_converged():
    routes = store.get("vpcroutes", {}).values()
    def ok(r):
        conditions = {c["type"]: c["status"] for c in (r.get("status") or {}).get("conditions", [])}
        return conditions.get("Accepted") == "True" and conditions.get("Programmed") == "True"
    return sum(1 for r in routes if ok(r)), len(routes)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, body):
        """Answers `body`: an object, or bytes already encoded."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def conflict(self, reason):
        self.reply(409, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": 409})

    def not_found(self):
        self.reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})

    def do_GET(self):
        url = urlparse(self.path)
        query = parse_qs(url.query)
        if url.path == "/version":
            return self.reply(200, {"major": "1", "minor": "24", "gitVersion": "v1.24.17-fake"})
        if url.path == "/fake/stats":
            with lock:
                ready, total = routes_converged()
                return self.reply(200, {"status_writes": status_writes[0], "routes_ready": ready, "routes": total})
        if not (parsed := self.target()):
            return
        plural, namespace, name, _ = parsed
        if name:
            with lock:
                obj = store.get(plural, {}).get((namespace, name))
                obj = obj and copy_of(obj)
            return self.reply(200, obj) if obj else self.not_found()
        if query.get("watch", ["0"])[0] in ("1", "true"):
            return self.watch(plural, int(query.get("timeoutSeconds", ["290"])[0]))
        selector = query.get("fieldSelector", [""])[0]
        wanted = selector.split("=", 1)[1] if selector.startswith("metadata.name=") else None
        api_version, kind = KINDS[plural]
        with lock:
            items = [o for (ns, n), o in store.get(plural, {}).items()
                     if (namespace is None or ns == namespace) and (wanted is None or n == wanted)]
            # Encoded under the lock: writers change stored objects in place.
            data = json.dumps({"apiVersion": api_version, "kind": kind + "List",
                               "metadata": {"resourceVersion": str(version[0])}, "items": items}).encode()
        self.reply(200, data)

    def watch(self, plural, timeout):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        pending = []
        with lock:
            watches.setdefault(plural, []).append(pending)
        deadline = time.monotonic() + min(timeout, 60)
        try:
            while time.monotonic() < deadline:
                with lock:
                    lock.wait_for(lambda: pending, timeout=max(0.0, deadline - time.monotonic()))
                    lines, pending[:] = list(pending), []
                for line in lines:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            with lock:
                watches[plural].remove(pending)

    def target(self):
        """The request's (plural, namespace, name, subresource); None once answered 404."""
        parsed = parse_path(urlparse(self.path).path)
        if not parsed:
            self.not_found()
        return parsed

    def object_in(self, namespace):
        """The request's object, placed in `namespace`."""
        obj = self.body()
        obj.setdefault("metadata", {})["namespace"] = namespace
        return obj

    def do_POST(self):
        if not (parsed := self.target()):
            return
        plural, namespace, _, _ = parsed
        obj = self.object_in(namespace)
        if plural == "events":
            return self.reply(201, obj)
        with lock:
            if (namespace, obj["metadata"].get("name")) in store.get(plural, {}):
                return self.conflict("AlreadyExists")
            created = copy_of(put(plural, obj))
            notify(plural, "ADDED", created)
        self.reply(201, created)

    def do_PUT(self):
        if not (parsed := self.target()):
            return
        plural, namespace, _, _ = parsed
        obj = self.object_in(namespace)
        with lock:
            current = store.get(plural, {}).get((namespace, obj["metadata"].get("name")))
            # Optimistic concurrency, which leader election relies on: a stale write loses.
            if current and obj["metadata"].get("resourceVersion") not in (None, current["metadata"]["resourceVersion"]):
                return self.conflict("Conflict")
            replaced = copy_of(put(plural, obj))
            notify(plural, "MODIFIED", replaced)
        self.reply(200, replaced)

    def do_PATCH(self):
        if not (parsed := self.target()):
            return
        plural, namespace, name, subresource = parsed
        patch = self.body()
        with lock:
            obj = store.get(plural, {}).get((namespace, name))
            if obj is None:
                return self.not_found()
            if subresource == "status":
                status_writes[0] += 1
                obj["status"] = merge_status(obj.get("status"), patch.get("status"))
            obj["metadata"]["resourceVersion"] = next_version()
            patched = copy_of(obj)
            notify(plural, "MODIFIED", patched)
        self.reply(200, patched)


def copy_of(obj):
    """A copy to answer with outside the lock, while writers may change the stored object."""
    return json.loads(json.dumps(obj))


def main():
    port, services = int(sys.argv[1]), int(sys.argv[2])
    routes_per_service = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    discovered = len(sys.argv) > 4 and sys.argv[4] == "1"
    fleet(services, routes_per_service, discovered)
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"fake API server on 127.0.0.1:{port}: {services} services, {services * routes_per_service} routes", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

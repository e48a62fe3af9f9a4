"""grpc.health.v1.Health/Watch streams status changes, and readiness differs from liveness (gRPC
service names "liveness" / "readiness", HTTP /health and /health/ready). A worker is killed:
  --phase lost:    the server does not restart workers (--respawn-delay-ms -1): Watch streams
                   SERVING then NOT_SERVING; readiness is NOT_SERVING / 503, liveness SERVING /
                   200; a generation over HTTP is 503 with an OpenAI-style body.
  --phase recover: the spawner restarts the worker: Watch streams SERVING, NOT_SERVING, SERVING.
Usage: health_watch_test.py --grpc HOST:PORT --http HOST:PORT --proto-root DIR --phase P
                            --secret CLUSTER_SECRET"""
import argparse
import json
import os
import signal
import sys
import unittest
import urllib.error
import urllib.request

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import client_test  # noqa: E402  (stub generation from the .proto files)

ARGS = None
LIMIT_S = 60  # bound on any wait (liveness, not a timing assertion)


def http_status(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request("http://%s%s" % (ARGS.http, path), data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=LIMIT_S) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class WatchTest(unittest.TestCase):
    def setUp(self):
        self.channel = grpc.insecure_channel(ARGS.grpc)
        self.health = client_test.hpb_grpc.HealthStub(self.channel)
        self.stub = client_test.pb_grpc.EmserveStub(self.channel)
        self.hpb = client_test.hpb

    def tearDown(self):
        self.channel.close()

    def watch(self, service=""):
        return self.health.Watch(self.hpb.HealthCheckRequest(service=service), timeout=LIMIT_S)

    def check(self, service):
        return self.health.Check(self.hpb.HealthCheckRequest(service=service),
                                 timeout=LIMIT_S).status

    def kill_a_worker(self):
        si = self.stub.GetServerInfo(client_test.pb.GetServerInfoRequest(), timeout=LIMIT_S,
                                     metadata=[("authorization", "Bearer " + ARGS.secret)])
        pids = [w.pid for w in si.workers if w.pid > 0]  # shown with the cluster secret only
        self.assertEqual(len(pids), 2)
        os.kill(pids[1], signal.SIGKILL)
        return si.group_generation

    def test_watch(self):
        S = self.hpb.HealthCheckResponse
        ready, live = self.watch(), self.watch("liveness")
        unknown = self.watch("no.such.Service")
        self.assertEqual(next(ready).status, S.SERVING)
        self.assertEqual(next(live).status, S.SERVING)
        self.assertEqual(next(unknown).status, S.SERVICE_UNKNOWN)  # and the call stays open
        unknown.cancel()
        self.assertEqual(self.check("readiness"), S.SERVING)
        self.assertEqual(http_status("GET", "/health/ready")[0], 200)
        gen = self.kill_a_worker()
        self.assertEqual(next(ready).status, S.NOT_SERVING)
        if ARGS.phase == "lost":
            self.assertEqual(self.check(""), S.NOT_SERVING)
            self.assertEqual(self.check("emserve.v1.Emserve"), S.NOT_SERVING)
            self.assertEqual(self.check("liveness"), S.SERVING)
            self.assertEqual(http_status("GET", "/health")[0], 200)
            status, body = http_status("GET", "/health/ready")
            self.assertEqual(status, 503)
            status, body = http_status("POST", "/v1/completions",
                                       {"prompt": "Once upon a time", "max_tokens": 4})
            self.assertEqual(status, 503)
            err = json.loads(body)["error"]
            self.assertIn("not serving", err["message"])
            self.assertEqual(err["type"], "service_unavailable_error")
        else:
            self.assertEqual(next(ready).status, S.SERVING)  # the restarted worker re-joined
            si = self.stub.GetServerInfo(client_test.pb.GetServerInfoRequest(), timeout=LIMIT_S)
            self.assertGreater(si.group_generation, gen)
            self.assertEqual(http_status("GET", "/health/ready")[0], 200)
        ready.cancel()
        live.cancel()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--grpc", required=True)
    ap.add_argument("--http", required=True)
    ap.add_argument("--proto-root", required=True)
    ap.add_argument("--phase", choices=["lost", "recover"], required=True)
    ap.add_argument("--secret", required=True)
    ARGS, rest = ap.parse_known_args()
    client_test.generate_stubs(ARGS.proto_root)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)

"""TLS on the public port and mutual TLS between the coordinator and its workers (issue 12),
with Python grpcio against a server started by tls_test.sh with 2 local workers:
  - a TLS client with the client certificate streams the golden greedy generation (the workers
    formed their group and step over mutual TLS: the service could not answer otherwise);
  - a plaintext client, a TLS client without a certificate and one whose certificate a rogue CA
    signed are all refused (no reply);
  - the workers' ports (from GetServerInfo's admin view) refuse plaintext, refuse TLS without the
    internal client certificate, and with it still answer UNAUTHENTICATED without the cluster
    secret (forged internal calls);
  - GetServerInfo without the secret shows no worker address or pid;
  - the rendezvous store serves only mutual TLS with the internal CA's certificate, and then
    only a client that answers its nonce with the secret's HMAC;
  - the HTTP port serves at most --http-max-conn-per-ip connections from one address.
With --server-tls-only (a server with --tls-cert but no --tls-client-ca, and --http-tls-cert): a
TLS client without a certificate is served and a plaintext one is refused; the HTTP port answers
HTTPS and refuses plain HTTP.
Usage: tls_test.py --addr HOST:PORT --certs DIR --proto-root DIR [--http HOST:PORT --secret S
       --store HOST:PORT --per-ip N | --server-tls-only]"""
import argparse
import http.client
import importlib
import os
import socket
import ssl
import sys
import tempfile
import time
import unittest
import urllib.request

import grpc
from grpc_tools import protoc

GOLDEN = [432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410,
          408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370,
          432, 352, 266, 268, 388, 426, 338, 391, 266, 267, 337, 335, 312, 432, 398, 312, 286,
          267, 414, 270, 333, 415, 426, 13, 438, 310]
ARGS = None
pb = pb_grpc = None
HELLO = "/emserve.internal.v1.Worker/Hello"


def generate_stubs(proto_root):
    out = tempfile.mkdtemp(prefix="emserve_tls_py_")
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    f = "proto/emserve/v1/emserve.proto"
    if protoc.main(["protoc", "-I" + proto_root, "-I" + include, "--python_out=" + out,
                    "--grpc_python_out=" + out, f]) != 0:
        raise RuntimeError("protoc failed for " + f)
    sys.path.insert(0, out)
    global pb, pb_grpc
    pb = importlib.import_module("proto.emserve.v1.emserve_pb2")
    pb_grpc = importlib.import_module("proto.emserve.v1.emserve_pb2_grpc")


def pem(name):
    with open(os.path.join(ARGS.certs, name), "rb") as f:
        return f.read()


def creds(ca, cert=None):
    """TLS channel credentials trusting ca.pem-like file `ca`, presenting `cert` (a name whose
    .pem and .key are in the certificate directory) when given."""
    if cert is None:
        return grpc.ssl_channel_credentials(root_certificates=pem(ca))
    return grpc.ssl_channel_credentials(root_certificates=pem(ca), private_key=pem(cert + ".key"),
                                        certificate_chain=pem(cert + ".pem"))


def generate(channel, max_tokens=60, timeout=30):
    stub = pb_grpc.EmserveStub(channel)
    req = pb.GenerateRequest(request_id="tls-1", text="Once upon a time",
                             sampling=pb.SamplingParams(temperature=0.0),
                             stopping=pb.StoppingParams(max_tokens=max_tokens))
    ids = []
    for resp in stub.Generate(req, timeout=timeout):
        if resp.HasField("chunk"):
            ids.extend(resp.chunk.token_ids)
    return ids


def refused(test, channel, what):
    """A call on channel must fail without a reply (the handshake or the transport refuses)."""
    with test.assertRaises(grpc.RpcError, msg=what) as cm:
        generate(channel, max_tokens=4, timeout=5)
    test.assertIn(cm.exception.code(), (grpc.StatusCode.UNAVAILABLE,
                                        grpc.StatusCode.DEADLINE_EXCEEDED), what)
    channel.close()


class MutualTlsTest(unittest.TestCase):
    def test_tls_client_with_certificate_gets_the_golden_generation(self):
        with grpc.secure_channel(ARGS.addr, creds("ca.pem", "client")) as ch:
            self.assertEqual(generate(ch), GOLDEN)

    def test_plaintext_client_refused(self):
        refused(self, grpc.insecure_channel(ARGS.addr), "plaintext on a TLS port")

    def test_tls_client_without_certificate_refused(self):
        refused(self, grpc.secure_channel(ARGS.addr, creds("ca.pem")), "no client certificate")

    def test_rogue_client_certificate_refused(self):
        refused(self, grpc.secure_channel(ARGS.addr, creds("ca.pem", "rogue")),
                "a certificate from a CA the server does not trust")

    def test_server_info_hides_workers_without_the_secret(self):
        with grpc.secure_channel(ARGS.addr, creds("ca.pem", "client")) as ch:
            si = pb_grpc.EmserveStub(ch).GetServerInfo(pb.GetServerInfoRequest(), timeout=10)
            self.assertEqual(len(si.workers), 2)
            for w in si.workers:
                self.assertEqual((w.address, w.pid), ("", 0))

    def worker_addrs(self):
        with grpc.secure_channel(ARGS.addr, creds("ca.pem", "client")) as ch:
            si = pb_grpc.EmserveStub(ch).GetServerInfo(
                pb.GetServerInfoRequest(), timeout=10,
                metadata=[("authorization", "Bearer " + ARGS.secret)])
        addrs = [w.address for w in si.workers]
        self.assertEqual(len(addrs), 2)
        self.assertTrue(all(addrs), addrs)
        return addrs

    def hello(self, channel, secret):
        call = channel.unary_unary(HELLO, request_serializer=lambda b: b,
                                   response_deserializer=lambda b: b)
        md = [("authorization", "Bearer " + secret)] if secret else None
        return call(b"", timeout=5, metadata=md)

    def test_worker_ports_refuse_forged_calls(self):
        for addr in self.worker_addrs():
            for what, ch in (("plaintext", grpc.insecure_channel(addr)),
                             ("TLS without the internal client certificate",
                              grpc.secure_channel(addr, creds("ica.pem"))),
                             ("TLS with the public client certificate",
                              grpc.secure_channel(addr, creds("ica.pem", "client"))),
                             ("TLS with a rogue certificate",
                              grpc.secure_channel(addr, creds("ica.pem", "rogue")))):
                with self.assertRaises(grpc.RpcError, msg=what) as cm:
                    self.hello(ch, ARGS.secret)
                self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE,
                                 "%s to worker %s: %s" % (what, addr, cm.exception))
                ch.close()
            with grpc.secure_channel(addr, creds("ica.pem", "internal")) as ch:
                for secret in (None, "a-wrong-cluster-secret-0000"):
                    with self.assertRaises(grpc.RpcError) as cm:
                        self.hello(ch, secret)
                    self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAUTHENTICATED,
                                     str(cm.exception))
                with self.assertRaises(grpc.RpcError) as cm:  # past the secret: an empty Hello
                    self.hello(ch, ARGS.secret)
                self.assertEqual(cm.exception.code(), grpc.StatusCode.FAILED_PRECONDITION,
                                 str(cm.exception))

    def store_tls(self, cert):
        """A TLS connection to the rendezvous store presenting `cert` (None: no certificate)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.load_verify_locations(os.path.join(ARGS.certs, "ica.pem"))
        if cert:
            ctx.load_cert_chain(os.path.join(ARGS.certs, cert + ".pem"),
                                os.path.join(ARGS.certs, cert + ".key"))
        host, port = ARGS.store.rsplit(":", 1)
        raw = socket.create_connection((host, int(port)), timeout=5)
        return ctx.wrap_socket(raw)

    def test_store_requires_mutual_tls(self):
        host, port = ARGS.store.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as s:  # plaintext
            s.sendall(b"G\x0a\x00\x00\x00gloo/rank0")
            try:
                got = s.recv(64)
            except (ConnectionResetError, socket.timeout):
                got = b""
            self.assertEqual(got, b"", "the store answered a plaintext client")
        for cert in (None, "client", "rogue"):  # no certificate, another CA's, a rogue one
            try:
                with self.store_tls(cert) as s:
                    got = s.recv(16)  # TLS 1.3: the refusal comes after the handshake
            except (ssl.SSLError, OSError):
                got = b""
            self.assertEqual(got, b"", "the store served TLS with certificate %s" % cert)
        with self.store_tls("internal") as s:
            nonce = b""
            while len(nonce) < 16:
                part = s.recv(16 - len(nonce))
                self.assertTrue(part, "no nonce from the store over mutual TLS")
                nonce += part
            s.sendall(b"A\x20\x00\x00\x00" + bytes(32))  # a wrong HMAC
            try:
                got = s.recv(1)
            except (ssl.SSLError, OSError):
                got = b""
            self.assertEqual(got, b"", "the store served a client without the secret's HMAC")

    def test_http_connections_per_ip_bounded(self):
        host, port = ARGS.http.rsplit(":", 1)
        held = []
        for _ in range(ARGS.per_ip):
            held.append(socket.create_connection((host, int(port)), timeout=5))
        extra = socket.create_connection((host, int(port)), timeout=5)
        extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            got = extra.recv(100)
        except (ConnectionResetError, socket.timeout):
            got = b""
        self.assertEqual(got, b"", "connection %d from one IP served" % (ARGS.per_ip + 1))
        extra.close()
        for s in held:
            s.close()
        for _ in range(50):  # the server notices the closed connections
            try:
                with urllib.request.urlopen("http://%s/health" % ARGS.http, timeout=5) as r:
                    self.assertEqual(r.status, 200)
                    return
            except OSError:
                time.sleep(0.1)
        self.fail("HTTP not served again after the connections closed")


class ServerTlsOnlyTest(unittest.TestCase):
    def test_tls_client_without_certificate_served(self):
        with grpc.secure_channel(ARGS.addr, creds("ca.pem")) as ch:
            self.assertEqual(generate(ch), GOLDEN)

    def test_plaintext_client_refused(self):
        refused(self, grpc.insecure_channel(ARGS.addr), "plaintext on a TLS port")

    def test_https_health_and_plain_http_refused(self):
        ctx = ssl.create_default_context(cafile=os.path.join(ARGS.certs, "ca.pem"))
        url = "https://%s/health" % ARGS.http.replace("127.0.0.1", "localhost")
        with urllib.request.urlopen(url, timeout=10, context=ctx) as r:
            self.assertEqual(r.status, 200)
        with self.assertRaises((OSError, http.client.HTTPException)):
            with urllib.request.urlopen("http://%s/health" % ARGS.http, timeout=5) as r:
                r.read()

    def test_untrusted_server_certificate_refused_by_the_client(self):
        refused(self, grpc.secure_channel(ARGS.addr, creds("rogueca.pem")),
                "a server certificate the client's CA did not sign")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--certs", required=True)
    ap.add_argument("--proto-root", required=True)
    ap.add_argument("--http")
    ap.add_argument("--secret")
    ap.add_argument("--store")
    ap.add_argument("--per-ip", type=int, default=2)
    ap.add_argument("--server-tls-only", action="store_true")
    ARGS = ap.parse_args()
    generate_stubs(ARGS.proto_root)
    case = ServerTlsOnlyTest if ARGS.server_tls_only else MutualTlsTest
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(case)
    ok = unittest.TextTestRunner(verbosity=2).run(suite).wasSuccessful()
    sys.exit(0 if ok else 1)

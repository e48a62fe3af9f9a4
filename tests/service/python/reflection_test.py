"""Server reflection of the public API, checked with the official grpcio-reflection client
(an implementation that is not ours): the services are listed, the schema it downloads is enough
to call Tokenize with no .proto file at hand (proto3 `optional` presence included), unknown
symbols are NOT_FOUND, one stream answers several requests in order (v1 and v1alpha paths), and
a malformed request ends the stream with INVALID_ARGUMENT while the server keeps serving.
Usage: reflection_test.py --addr HOST:PORT"""
import argparse
import sys

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILS.append(what)


def schema_calls(ch):
    db = ProtoReflectionDescriptorDatabase(ch)
    services = set(db.get_services())
    check({"emserve.v1.Emserve", "grpc.health.v1.Health"} <= services,
          f"list_services names the public services: {sorted(services)}")
    pool = descriptor_pool.DescriptorPool(db)
    svc = pool.FindServiceByName("emserve.v1.Emserve")
    methods = {m.name: m for m in svc.methods}
    check({"Generate", "Abort", "GetModelInfo", "GetServerInfo", "Tokenize"} <= set(methods),
          f"Emserve's methods: {sorted(methods)}")
    gen = methods["Generate"]
    check(gen.output_type.full_name == "emserve.v1.GenerateResponse",
          "Generate returns GenerateResponse")
    tok_req = pool.FindMessageTypeByName("emserve.v1.TokenizeRequest")
    check(tok_req.fields_by_name["add_special"].has_presence,
          "proto3 optional keeps its presence through reflection")
    Req = message_factory.GetMessageClass(tok_req)
    Resp = message_factory.GetMessageClass(pool.FindMessageTypeByName("emserve.v1.TokenizeResponse"))
    call = ch.unary_unary("/emserve.v1.Emserve/Tokenize",
                          request_serializer=Req.SerializeToString,
                          response_deserializer=Resp.FromString)
    got = list(call(Req(text="Once upon a time"), timeout=30).ids)
    check(got == [1, 403, 407, 261, 378], f"Tokenize called from the reflected schema: {got}")
    try:
        db.FindFileContainingSymbol("emserve.v1.NoSuchMessage")
        check(False, "unknown symbol rejected")
    except KeyError:
        check(True, "unknown symbol rejected")


def stream(ch, path, reqs, timeout=30):
    call = ch.stream_stream(path, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    return call(iter(reqs), timeout=timeout)


def one_stream(ch, path):
    R = reflection_pb2.ServerReflectionRequest
    reqs = [R(list_services=""), R(file_by_filename="emserve/v1/emserve.proto"),
            R(file_containing_symbol="emserve.v1.Emserve.Generate"),
            R(file_containing_symbol="emserve.v1.Nope"),
            R(file_containing_symbol="grpc.health.v1.HealthCheckResponse.ServingStatus")]
    out = [reflection_pb2.ServerReflectionResponse.FromString(b)
           for b in stream(ch, path, [r.SerializeToString() for r in reqs])]
    check(len(out) == 5, f"{path}: one answer per request ({len(out)})")
    if len(out) != 5:
        return
    check(out[0].WhichOneof("message_response") == "list_services_response", "answer 1: services")
    fd = descriptor_pb2.FileDescriptorProto.FromString(
        out[1].file_descriptor_response.file_descriptor_proto[0])
    check(fd.name == "emserve/v1/emserve.proto" and fd.package == "emserve.v1",
          f"answer 2: the file by name ({fd.name})")
    check(out[2].WhichOneof("message_response") == "file_descriptor_response",
          "answer 3: the file of a method")
    check(out[3].error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0],
          f"answer 4: NOT_FOUND ({out[3].error_response.error_message})")
    fd = descriptor_pb2.FileDescriptorProto.FromString(
        out[4].file_descriptor_response.file_descriptor_proto[0])
    check(fd.package == "grpc.health.v1", "answer 5: the file of a nested enum")
    check(out[1].original_request.file_by_filename == "emserve/v1/emserve.proto",
          "original_request echoed")


def malformed(ch):
    try:
        list(stream(ch, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                    [b"\xff\xff\xff"]))
        check(False, "malformed request rejected")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.INVALID_ARGUMENT,
              f"malformed request: {e.code()} {e.details()}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    a = ap.parse_args()
    with grpc.insecure_channel(a.addr) as ch:
        schema_calls(ch)
        one_stream(ch, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo")
        one_stream(ch, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
        malformed(ch)
        schema_calls(ch)  # still serving
    print(f"{len(FAILS)} failures")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())

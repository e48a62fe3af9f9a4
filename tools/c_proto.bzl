"""protoc-c code generation (there is no protoc on Debian 12, only protoc-c)."""

def c_proto_library(name, srcs, deps = [], visibility = None):
    """deps: other c_proto_library targets whose .proto files are imported (full labels)."""
    base = [s[:-len(".proto")] for s in srcs]
    c_files = [b + ".pb-c.c" for b in base]
    h_files = [b + ".pb-c.h" for b in base]
    native.filegroup(
        name = name + "_protos",
        srcs = srcs + [d + "_protos" for d in deps],
        visibility = visibility,
    )
    native.genrule(
        name = name + "_gen",
        srcs = srcs + [d + "_protos" for d in deps],
        outs = c_files + h_files,
        cmd = "protoc-c -I. --c_out=$(GENDIR) " +
              " ".join(["$(location %s)" % s for s in srcs]),
    )
    native.cc_library(
        name = name,
        srcs = c_files,
        hdrs = h_files,
        deps = deps,
        copts = ["-Wno-unused-parameter"],
        linkopts = ["-lprotobuf-c"],
        visibility = visibility,
    )

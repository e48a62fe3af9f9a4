"""CUDA targets behind --config=cuda; nvcc is called by absolute path (strict action env)."""

NVCC = "/usr/local/cuda/bin/nvcc"
CUDA_LIB = "/usr/local/cuda/lib64"

CUDA_ONLY = select({
    "//config:cuda": [],
    "//conditions:default": ["//config:incompatible"],
})

NVCC_FLAGS = " ".join([
    "-O2",
    "-std=c++17",
    "-Xcompiler -fPIC",
    "-gencode arch=compute_80,code=sm_80",
    "-gencode arch=compute_90,code=[sm_90,compute_90]",
])

def _cc_headers_impl(ctx):
    hdrs = [d[CcInfo].compilation_context.headers for d in ctx.attr.deps]
    return [DefaultInfo(files = depset(transitive = hdrs))]

# The headers of cc_library deps as plain files, so that nvcc (a genrule) sees them in the
# sandbox without the deps' packages having to export their header files.
_cc_headers = rule(
    implementation = _cc_headers_impl,
    attrs = {"deps": attr.label_list(providers = [CcInfo])},
)

def cuda_library(name, srcs, hdrs = [], deps_hdrs = [], linkopts = [], deps = [], visibility = None):
    objs = []
    dep_hdrs = []
    if deps:
        _cc_headers(name = name + "_dep_hdrs", deps = deps, target_compatible_with = CUDA_ONLY)
        dep_hdrs = [":" + name + "_dep_hdrs"]
    for src in srcs:
        obj = src[:-len(".cu")] + ".cu.o"
        native.genrule(
            name = name + "_" + src.replace("/", "_").replace(".", "_"),
            srcs = [src] + hdrs + deps_hdrs + dep_hdrs,
            outs = [obj],
            cmd = "%s -c %s -I. -I$(GENDIR) -o $@ $(location %s)" % (NVCC, NVCC_FLAGS, src),
            target_compatible_with = CUDA_ONLY,
        )
        objs.append(obj)
    native.cc_library(
        name = name,
        srcs = objs,
        hdrs = hdrs,
        linkopts = ["-L" + CUDA_LIB, "-Wl,-rpath," + CUDA_LIB, "-lcudart", "-lcublas"] + linkopts,
        deps = deps,
        target_compatible_with = CUDA_ONLY,
        visibility = visibility,
    )

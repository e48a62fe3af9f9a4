/* The coordinator <-> worker protocol (proto/emserve/internal/v1/worker.proto): version,
 * method names and the op count, tied together so that adding an op without bumping the
 * version fails to compile. Both ends include this header. */
#pragma once

#define WORKER_PROTO_VERSION 3 /* 2: FormGroup.act_quant; 3: phase PREFILL_CHUNK */

typedef enum {
    WORKER_OP_HELLO = 0,  /* first call on every link: version + capabilities */
    WORKER_OP_FORM_GROUP, /* join a gloo group (rank, world, store, prefix) and load the shard */
    WORKER_OP_STEP,       /* one batched forward (+ sequence open/drop, policy steps) */
    WORKER_OP_COUNT
} worker_op;

_Static_assert(WORKER_OP_COUNT == 3 && WORKER_PROTO_VERSION == 3,
               "worker protocol changed: bump WORKER_PROTO_VERSION and update this assert");

#define WORKER_METHOD_HELLO      "/emserve.internal.v1.Worker/Hello"
#define WORKER_METHOD_FORM_GROUP "/emserve.internal.v1.Worker/FormGroup"
#define WORKER_METHOD_STEP       "/emserve.internal.v1.Worker/Step"

/* Policy phases carried in SeqPolicy.phase (mapped to ems policy phases by the worker). */
enum { WORKER_PHASE_PREFILL_END = 1, WORKER_PHASE_DECODE = 2, WORKER_PHASE_PREFILL_CHUNK = 3 };

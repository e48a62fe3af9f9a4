/* The case groups of cuda_ops_test (each runs its table and reports through harness.h). */
#pragma once
#include "kernels/cuda/cuda_ctx.h"

void cases_dense(kern_cuda_ctx *c); /* matmul, rmsnorm, rope, swiglu, embed, sampling */
void cases_ops(void);               /* the kern_ops dispatcher (host pointers) vs ref */
void cases_attn(kern_cuda_ctx *c);  /* attention f32/int8/int4 + statistics */
void cases_ems(kern_cuda_ctx *c);   /* EMS compression step vs the CPU reference */
void cases_no_device(void);         /* argument validation that needs no device */
void cases_perf(kern_cuda_ctx *c);  /* --perf: timings only, L2 flushed (perf.c) */

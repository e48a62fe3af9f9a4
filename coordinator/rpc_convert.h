/* Protobuf <-> native conversion for the public API: GenerateRequest -> coord_req (every
 * field validated; errors name the field), scheduler events -> GenerateResponse bytes, and the
 * ModelInfo / ServerInfo replies from the model, the worker group and the scheduler. */
#pragma once
#include <stddef.h>

#include <grpc/grpc.h>

#include "common/status.h"
#include "coordinator/group.h"
#include "coordinator/request.h"
#include "coordinator/rpc_prompt.h"
#include "coordinator/sched.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "proto/c/emserve/v1/emserve.pb-c.h"

/* EM_EINVAL with "field: reason" in err for any unsupported or out-of-range value: the proto's
 * fields go through req_spec.h's validator (shared with the HTTP API). */
em_status coord_rpc_req_from_proto(const Emserve__V1__GenerateRequest *rq,
                                   const coord_prompt_ctx *pc, uint64_t serial, coord_req **out,
                                   char *err, size_t errlen);

/* Packs a CHUNK or COMPLETE event as a GenerateResponse. NULL on failure. */
grpc_byte_buffer *coord_rpc_pack_event(const coord_event *ev);

/* ModelInfo of hp, the model's name and the chat template's family (model_path and name are
 * borrowed). */
void coord_rpc_model_info(const model_hparams *hp, const char *model_path, const char *name,
                          const coord_chat_template *chat, Emserve__V1__ModelInfo *r);

/* ServerInfo from n worker snapshots and the scheduler's counters. r points into ws and into
 * static storage of this file: one caller thread (the server's), valid until the next call. */
void coord_rpc_server_info(const coord_worker_snapshot *ws, int n, const coord_sched_stats *stats,
                           int max_batch_tokens, int max_slots, double uptime_s,
                           Emserve__V1__ServerInfo *r);

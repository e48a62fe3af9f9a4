/* Protobuf <-> native conversion for the public API: GenerateRequest -> coord_req (every
 * field validated; errors name the field), scheduler events -> GenerateResponse bytes. */
#pragma once
#include <stddef.h>

#include <grpc/grpc.h>

#include "common/status.h"
#include "coordinator/request.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "proto/c/emserve/v1/emserve.pb-c.h"

/* EM_EINVAL with "field: reason" in err for any unsupported or out-of-range value. */
em_status coord_rpc_req_from_proto(const Emserve__V1__GenerateRequest *rq, const model *m,
                                   const tokenizer *tok, uint64_t serial, coord_req **out,
                                   char *err, size_t errlen);

/* Packs a CHUNK or COMPLETE event as a GenerateResponse. NULL on failure. */
grpc_byte_buffer *coord_rpc_pack_event(const coord_event *ev);

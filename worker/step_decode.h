/* The worker's StepRequest decoding: the protobuf message to native worker_step_in arrays (kv
 * parameters parsed and validated into each open's ems_config). Apart from the rpc loop so that
 * //fuzz:step_worker can drive the same decoding from wire bytes. */
#pragma once
#include <stddef.h>

#include "common/status.h"
#include "proto/emserve/internal/v1/worker.pb-c.h"
#include "worker/wstate.h"

/* Fills *in from rq, borrowing rq's arrays; *opens and *pols are malloc'd (free them even on
 * failure). EM_EINVAL with a message for lengths that differ or a bad kv parameter. */
em_status worker_step_decode(const Emserve__Internal__V1__StepRequest *rq, worker_step_in *in,
                             worker_open **opens, worker_policy **pols, char *err, size_t errlen);

/* A greedy generation running on a thread of its own, for service tests that act on the
 * service while a stream is under way (kill or stop a worker, SIGTERM, fill the queue): prompt
 * "Once upon a time", ignore_eos, counting the chunks it streams; it can be cancelled at its
 * next chunk. */
#pragma once
#include <pthread.h>

#include "common/status.h"
#include "coordinator/client.h"

typedef struct svc_job {
    coord_client *cl;
    int max_tokens;
    long timeout_ms;
    int n_chunks, stop; /* atomics: chunks streamed; set to cancel at the next one */
    coord_client_result res;
    pthread_t thr;
} svc_job;

/* Starts the generation of max_tokens through cl with a deadline of timeout_ms. EM_ENOMEM when
 * the thread cannot be created. */
em_status svc_job_start(svc_job *j, coord_client *cl, int max_tokens, long timeout_ms);

/* Chunks streamed so far. */
int svc_job_chunks(svc_job *j);

/* 1 once the job has streamed n chunks (waits at most s seconds); 0 otherwise. */
int svc_job_wait_chunks(svc_job *j, int n, double s);

/* Cancels the call at its next chunk. */
void svc_job_cancel(svc_job *j);

/* Waits for the call to end (bounded by its deadline); j->res holds its result (the caller
 * frees it with coord_client_result_free). */
void svc_job_join(svc_job *j);

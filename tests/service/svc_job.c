/* A generation on a thread of its own (see svc_job.h). */
#include "tests/service/svc_job.h"

#include <string.h>
#include <unistd.h>

#include "common/timeutil.h"

static int on_chunk(void *user, const int32_t *ids, int n, const char *text)
{
    svc_job *j = user;
    (void)ids;
    (void)n;
    (void)text;
    __atomic_add_fetch(&j->n_chunks, 1, __ATOMIC_SEQ_CST);
    return __atomic_load_n(&j->stop, __ATOMIC_SEQ_CST); /* non-zero: cancel the call */
}

static void *run(void *p)
{
    svc_job *j = p;
    coord_client_req rq;
    memset(&rq, 0, sizeof rq);
    rq.text = "Once upon a time";
    rq.max_tokens = j->max_tokens;
    rq.ignore_eos = 1;
    rq.temperature = 0;
    rq.top_k = -1;
    rq.timeout_ms = j->timeout_ms;
    rq.on_chunk = on_chunk;
    rq.user = j;
    coord_client_generate(j->cl, &rq, &j->res);
    return NULL;
}

em_status svc_job_start(svc_job *j, coord_client *cl, int max_tokens, long timeout_ms)
{
    memset(j, 0, sizeof *j);
    j->cl = cl;
    j->max_tokens = max_tokens;
    j->timeout_ms = timeout_ms;
    return pthread_create(&j->thr, NULL, run, j) == 0 ? EM_OK : EM_ENOMEM;
}

int svc_job_chunks(svc_job *j)
{
    return __atomic_load_n(&j->n_chunks, __ATOMIC_SEQ_CST);
}

int svc_job_wait_chunks(svc_job *j, int n, double s)
{
    double t0 = em_now_s();
    while (svc_job_chunks(j) < n) {
        if (em_now_s() - t0 > s)
            return 0;
        usleep(1000);
    }
    return 1;
}

void svc_job_cancel(svc_job *j)
{
    __atomic_store_n(&j->stop, 1, __ATOMIC_SEQ_CST);
}

void svc_job_join(svc_job *j)
{
    pthread_join(j->thr, NULL);
}

/* The request's seed end to end (SamplingParams.seed through the rpc adapter, the scheduler and
 * the sampler): at temperature > 0 the same seed gives the same ids, on a fresh service too,
 * and different seeds give different ids. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc.h>

#include "coordinator/client.h"
#include "tests/service/svc_harness.h"
#include "tests/testutil/testutil.h"

#define N_TOKENS 32
#define N_SEEDS  4

static const uint64_t k_seeds[N_SEEDS] = {1, 2, 7, 1ull << 40};

/* ids[N_TOKENS] of one sampled generation; 0 when the call failed. */
static int sample_ids(coord_client *cl, uint64_t seed, int32_t *ids)
{
    coord_client_req rq;
    memset(&rq, 0, sizeof rq);
    rq.text = "Once upon a time";
    rq.max_tokens = N_TOKENS;
    rq.ignore_eos = 1;
    rq.temperature = 1.5f; /* flat enough that two seeds agreeing on 32 tokens is implausible */
    rq.top_k = -1;
    rq.seed = seed;
    rq.has_seed = 1;
    rq.timeout_ms = 30000;
    coord_client_result res;
    coord_client_generate(cl, &rq, &res);
    int ok = res.status == GRPC_STATUS_OK && res.n_output == N_TOKENS;
    CHECK(ok, "seed %llu: status %d (%s), %d ids", (unsigned long long)seed, res.status,
          res.message, res.n_output);
    if (ok) {
        memcpy(ids, res.output_ids, sizeof(int32_t) * N_TOKENS);
    }
    coord_client_result_free(&res);
    return ok;
}

/* Samples every seed on a fresh service with n_workers; ids[seed][token]. */
static void run_service(int n_workers, int32_t ids[N_SEEDS][N_TOKENS])
{
    svc s;
    if (svc_start(&s, n_workers, NULL) != EM_OK) {
        CHECK(0, "service with %d worker(s) did not start", n_workers);
        return;
    }
    coord_client *cl = coord_client_create(s.addr);
    int32_t again[N_TOKENS];
    for (int i = 0; i < N_SEEDS; i++) {
        if (sample_ids(cl, k_seeds[i], ids[i]) && sample_ids(cl, k_seeds[i], again)) {
            CHECK(memcmp(ids[i], again, sizeof again) == 0,
                  "%d worker(s): seed %llu repeats its ids", n_workers,
                  (unsigned long long)k_seeds[i]);
        }
    }
    coord_client_free(cl);
    svc_stop(&s);
}

int main(void)
{
    svc_model(); /* skips loudly without the test model */
    grpc_init();
    static int32_t one[N_SEEDS][N_TOKENS], two[N_SEEDS][N_TOKENS];
    run_service(1, one);
    run_service(2, two);
    grpc_shutdown();
    for (int i = 0; i < N_SEEDS; i++) {
        CHECK(memcmp(one[i], two[i], sizeof one[i]) == 0,
              "seed %llu: same ids on a fresh service with 1 and 2 workers",
              (unsigned long long)k_seeds[i]);
        for (int j = i + 1; j < N_SEEDS; j++) {
            CHECK(memcmp(one[i], one[j], sizeof one[i]) != 0, "seeds %llu and %llu gave equal ids",
                  (unsigned long long)k_seeds[i], (unsigned long long)k_seeds[j]);
        }
    }
    printf("seed 1: first ids %d %d %d %d; seed 2: %d %d %d %d\n", one[0][0], one[0][1], one[0][2],
           one[0][3], one[1][0], one[1][1], one[1][2], one[1][3]);
    TEST_END();
}

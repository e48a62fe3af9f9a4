/* Issue 12 item 1, re-expressed: two fake workers (tests/service/fake_worker) answer the
 * coordinator's Steps with lies - 2,000,000 KV slots (the reply that made the coordinator abort
 * with munmap_chunk), one slot too many (overflowed its slot buffers), a wrong slot id, more KV
 * entries than the context holds, a logits row missing, a reply to another step, compression
 * counts for too many slots or negative, a byte count whose sum would overflow. Each request hit by
 * a lie ends with UNAVAILABLE naming what was wrong; the coordinator stays up, re-forms the group
 * and serves the next request; once the fakes answer honestly a generation completes with OK. Every
 * wait has a limit. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <grpc/grpc.h>

#include "coordinator/client.h"
#include "tests/service/svc_harness.h"
#include "tests/testutil/testutil.h"

static const struct {
    const char *mode, *want; /* the fake's lie; a substring of the request's status message */
} k_lies[] = {
    {"huge", "RESOURCE_EXHAUSTED"}, /* over the reply cap derived from the step: not even read */
    {"extra-slots", "slots and"},
    {"bad-slot", "slot 0 is"},
    {"entries", "KV entries"},
    {"short-logits", "logits rows"},
    {"step-id", "reply to step"},
    {"counts-len", "compression counts"},
    {"counts-neg", "compression count out of range"},
    {"bytes-huge", "KV bytes for slot"},
};
#define N_LIES (int)(sizeof k_lies / sizeof k_lies[0])

static grpc_status_code generate(coord_client *cl, coord_client_result *res)
{
    coord_client_req rq;
    memset(&rq, 0, sizeof rq);
    rq.text = "Once upon a time";
    rq.max_tokens = 3;
    rq.ignore_eos = 1;
    rq.temperature = 0;
    rq.top_k = -1;
    rq.timeout_ms = 20000;
    return coord_client_generate(cl, &rq, res);
}

int main(void)
{
    svc_model(); /* skips loudly without the test model (the coordinator loads it) */
    grpc_init();
    char modes[256] = "", bin[PATH_MAX];
    for (int i = 0; i < N_LIES; i++) {
        strcat(modes, k_lies[i].mode);
        strcat(modes, ",");
    }
    strcat(modes, "ok");
    svc_bin("tests/service/fake_worker", bin, sizeof bin);
    const char *argv[] = {bin, "--modes", modes, NULL};
    svc fw[2], co;
    REQUIRE(svc_spawn(&fw[0], argv) == EM_OK && svc_spawn(&fw[1], argv) == EM_OK, "fake workers");
    const char *addrs[2] = {fw[0].addr, fw[1].addr};
    REQUIRE(svc_start_coordinator(&co, addrs, 2, NULL) == EM_OK, "coordinator did not start");
    coord_client *cl = coord_client_create(co.addr);
    for (int i = 0; i < N_LIES; i++) {
        CHECK(coord_client_wait_serving(cl, 20000) == EM_OK, "%s: not serving before the request",
              k_lies[i].mode);
        coord_client_result res;
        grpc_status_code st = generate(cl, &res);
        printf("%-13s -> %s: %s\n", k_lies[i].mode,
               st == GRPC_STATUS_UNAVAILABLE ? "UNAVAILABLE" : "?", res.message);
        CHECK(st == GRPC_STATUS_UNAVAILABLE && strstr(res.message, k_lies[i].want),
              "%s: status %d '%s', want UNAVAILABLE naming '%s'", k_lies[i].mode, st, res.message,
              k_lies[i].want);
        coord_client_result_free(&res);
        REQUIRE(svc_alive(&co), "the coordinator died after the '%s' reply", k_lies[i].mode);
    }
    /* honest replies from now on: the coordinator serves again */
    CHECK(coord_client_wait_serving(cl, 20000) == EM_OK, "not serving after the lies");
    coord_client_result res;
    grpc_status_code st = generate(cl, &res);
    CHECK(st == GRPC_STATUS_OK && res.n_output == 3, "honest replies: status %d (%s), %d ids", st,
          res.message, res.n_output);
    printf("honest        -> status %d, %d ids\n", st, res.n_output);
    coord_client_result_free(&res);
    CHECK(svc_alive(&co), "the coordinator died");
    coord_client_free(cl);
    svc_stop(&co);
    svc_stop(&fw[0]);
    svc_stop(&fw[1]);
    grpc_shutdown();
    TEST_END();
}

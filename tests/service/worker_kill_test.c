/* Worker loss and recovery. (A) local workers: kill -9 of a worker mid-generation ends the
 * stream with UNAVAILABLE within a bound (README: "within milliseconds"; checked generously:
 * under 2 s, against a 10 s deadline), health turns NOT_SERVING, the coordinator stays up, the
 * spawner restarts the worker and the group re-forms with a new generation (new gloo prefix):
 * serving resumes with the golden ids. (B) the same with workers started by hand
 * (--worker-addr, the multi-node path): the restarted worker re-joins on its address. Every
 * wait has a limit. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <grpc/grpc.h>

#include "common/timeutil.h"
#include "coordinator/client.h"
#include "tests/service/svc_harness.h"
#include "tests/service/svc_job.h"
#include "tests/testutil/testutil.h"

#define LOSS_BOUND_S    2.0   /* kill -9 -> stream ends with UNAVAILABLE */
#define CALL_TIMEOUT_MS 10000 /* the generation's own deadline: ending by it is a failure */
#define CHUNK_WAIT_S    30.0  /* for the generation to be under way */

/* Kills pid mid-generation; checks UNAVAILABLE within LOSS_BOUND_S and NOT_SERVING. */
static void kill_mid_generation(coord_client *cl, pid_t pid, const char *what)
{
    svc_job j;
    REQUIRE(svc_job_start(&j, cl, 2000, CALL_TIMEOUT_MS) == EM_OK, "%s: thread", what);
    int under_way = svc_job_wait_chunks(&j, 5, CHUNK_WAIT_S);
    CHECK(under_way, "%s: no 5 chunks within %.0f s", what, CHUNK_WAIT_S);
    double t0 = em_now_s();
    if (under_way) {
        CHECK(kill(pid, SIGKILL) == 0, "%s: kill -9 %d", what, (int)pid);
    }
    svc_job_join(&j); /* bounded by the call's deadline */
    double dt = em_now_s() - t0;
    const char *health = svc_health(cl, 5000);
    CHECK(j.res.status == GRPC_STATUS_UNAVAILABLE,
          "%s: stream ended with status %d (%s), want "
          "UNAVAILABLE",
          what, j.res.status, j.res.message);
    CHECK(dt < LOSS_BOUND_S, "%s: UNAVAILABLE %.2f s after kill -9 (bound %.1f s)", what, dt,
          LOSS_BOUND_S);
    CHECK(strcmp(health, "NOT_SERVING") == 0,
          "%s: health %s right after the loss, want NOT_SERVING", what, health);
    printf("%s: stream ended after %d chunks, %.3f s after kill -9: status %d (%s); health %s\n",
           what, svc_job_chunks(&j), dt, j.res.status, j.res.message, health);
    coord_client_result_free(&j.res);
}

static void test_local(void)
{
    const char *const extra[] = {"--respawn-delay-ms", "3000", "--cluster-secret-file",
                                 svc_secret_file(), NULL};
    svc s;
    REQUIRE(svc_start(&s, 2, extra) == EM_OK, "service did not start");
    coord_client *cl = coord_client_create(s.addr);
    coord_client_set_admin_secret(cl, svc_secret()); /* the workers' pids are for the admin */
    coord_client_info before, after;
    REQUIRE(coord_client_server_info(cl, &before) == EM_OK && before.serving, "server info");
    kill_mid_generation(cl, (pid_t)before.pid[1], "local worker 1");
    REQUIRE(svc_alive(&s), "the coordinator died");
    CHECK(coord_client_wait_serving(cl, 60000) == EM_OK, "not serving again after the restart");
    REQUIRE(coord_client_server_info(cl, &after) == EM_OK, "server info after the restart");
    CHECK(after.generation > before.generation && after.pid[1] != before.pid[1] &&
              after.pid[0] == before.pid[0],
          "generation %lld -> %lld, worker 1 pid %lld -> %lld", (long long)before.generation,
          (long long)after.generation, (long long)before.pid[1], (long long)after.pid[1]);
    CHECK(svc_golden_ok(cl, 60, "after a local worker restart"), "golden ids after the restart");
    printf("local: group generation %lld -> %lld\n", (long long)before.generation,
           (long long)after.generation);
    coord_client_free(cl);
    svc_stop(&s);
}

/* Waits (at most 30 s) until GetServerInfo shows a serving group newer than gen. */
static int wait_reformed(coord_client *cl, int64_t gen)
{
    for (int i = 0; i < 600; i++) {
        coord_client_info info;
        if (coord_client_server_info(cl, &info) == EM_OK && info.serving && info.generation > gen) {
            return 1;
        }
        usleep(50000);
    }
    return 0;
}

static void test_by_hand(void)
{
    svc w[2], co;
    REQUIRE(svc_start_worker(&w[0], "127.0.0.1:0") == EM_OK, "worker 0 did not start");
    REQUIRE(svc_start_worker(&w[1], "127.0.0.1:0") == EM_OK, "worker 1 did not start");
    /* the worker list comes from a config file (the multi-node launch) */
    char conf[512];
    tu_tmp_path(conf, sizeof conf, "cluster.conf");
    FILE *f = fopen(conf, "w");
    REQUIRE(f != NULL, "cannot write %s", conf);
    fprintf(f, "# two workers started by hand\nworker-addr = %s\nworker-addr = %s\nmax-seqs = 8\n",
            w[0].addr, w[1].addr);
    fclose(f);
    const char *extra[] = {"--config", conf, NULL};
    REQUIRE(svc_start_coordinator(&co, NULL, 0, extra) == EM_OK, "coordinator did not start");
    coord_client *cl = coord_client_create(co.addr);
    CHECK(svc_golden_ok(cl, 60, "before the kill (hand-started workers)"), "golden ids");
    coord_client_info before, after;
    REQUIRE(coord_client_server_info(cl, &before) == EM_OK, "server info");
    char addr0[64];
    snprintf(addr0, sizeof addr0, "%s", w[0].addr);
    kill_mid_generation(cl, w[0].pid, "hand-started worker 0");
    waitpid(w[0].pid, NULL, 0); /* killed with SIGKILL above */
    w[0].pid = 0;
    /* Still NOT_SERVING while the worker is down (nothing restarts it). */
    usleep(300000);
    CHECK(strcmp(svc_health(cl, 5000), "NOT_SERVING") == 0, "serving without worker 0");
    REQUIRE(svc_start_worker(&w[0], addr0) == EM_OK, "worker 0 did not restart on %s", addr0);
    CHECK(coord_client_wait_serving(cl, 60000) == EM_OK,
          "not serving again after worker 0 re-joined");
    REQUIRE(coord_client_server_info(cl, &after) == EM_OK, "server info after the re-join");
    CHECK(after.generation > before.generation, "generation %lld -> %lld",
          (long long)before.generation, (long long)after.generation);
    CHECK(svc_golden_ok(cl, 60, "after the hand-started worker re-joined"), "golden ids");
    printf("by hand: group generation %lld -> %lld\n", (long long)before.generation,
           (long long)after.generation);
    /* An idle worker killed and restarted at once on its address: the idle ping sees that it
     * left the group (its Hello reports no generation) and the group re-forms by itself. */
    char addr1[64];
    snprintf(addr1, sizeof addr1, "%s", w[1].addr);
    kill(w[1].pid, SIGKILL);
    waitpid(w[1].pid, NULL, 0);
    w[1].pid = 0;
    REQUIRE(svc_start_worker(&w[1], addr1) == EM_OK, "worker 1 did not restart on %s", addr1);
    int reformed = wait_reformed(cl, after.generation);
    CHECK(reformed, "a quickly restarted idle worker was not noticed within 30 s");
    CHECK(svc_golden_ok(cl, 60, "after a quick idle restart"), "golden ids");
    printf("idle worker restarted at once: group re-formed %s\n", reformed ? "ok" : "FAIL");
    CHECK(svc_alive(&co), "the coordinator died");
    coord_client_free(cl);
    svc_stop(&co);
    svc_stop(&w[0]);
    svc_stop(&w[1]);
}

int main(void)
{
    svc_model(); /* skips loudly without the test model */
    grpc_init();
    test_local();
    test_by_hand();
    grpc_shutdown();
    TEST_END();
}

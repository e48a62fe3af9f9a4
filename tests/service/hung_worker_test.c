/* Issue 12 item 3, re-expressed: a worker stopped with SIGSTOP (a hung process: it neither
 * answers nor dies). (A) mid-generation: the stream ends with UNAVAILABLE within 5 s (the step's
 * progress deadline, --step-timeout-ms 1000 plus the work), health is NOT_SERVING right after,
 * the stopped worker is killed (its pid disappears) while its peer is left alone, the spawner
 * starts a new one and the group serves the golden ids again. (B) while idle: the liveness ping
 * notices it within 10 s, kills it and the group comes back. Also GetServerInfo shows the
 * workers' pids only to a caller with the cluster secret (item 2). Every wait has a limit. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <grpc/grpc.h>

#include "common/timeutil.h"
#include "coordinator/client.h"
#include "tests/service/svc_harness.h"
#include "tests/service/svc_job.h"
#include "tests/testutil/testutil.h"

#define DETECT_BOUND_S 5.0 /* SIGSTOP -> stream ends with UNAVAILABLE */

static int proc_exists(pid_t pid)
{
    char path[64];
    struct stat st;
    snprintf(path, sizeof path, "/proc/%d", (int)pid);
    return stat(path, &st) == 0;
}

/* Waits up to s seconds for pid to disappear; 1 when it did. */
static int wait_gone(pid_t pid, double s)
{
    double t0 = em_now_s();
    while (proc_exists(pid) && em_now_s() - t0 < s) {
        usleep(20000);
    }
    return !proc_exists(pid);
}

static void stop_mid_generation(coord_client *cl, const coord_client_info *before)
{
    svc_job j;
    /* ending by the call's deadline is a failure (UNAVAILABLE is wanted) */
    REQUIRE(svc_job_start(&j, cl, 2000, 30000) == EM_OK, "thread");
    pid_t victim = (pid_t)before->pid[1];
    CHECK(svc_job_wait_chunks(&j, 5, 30), "no 5 chunks within 30 s");
    double t_stop = em_now_s();
    CHECK(kill(victim, SIGSTOP) == 0, "SIGSTOP %d", (int)victim);
    svc_job_join(&j); /* bounded by the call's deadline */
    double dt = em_now_s() - t_stop;
    const char *health = svc_health(cl, 5000);
    printf("mid-generation: stream ended %.2f s after SIGSTOP with status %d (%s); health %s\n", dt,
           j.res.status, j.res.message, health);
    CHECK(j.res.status == GRPC_STATUS_UNAVAILABLE, "status %d (%s), want UNAVAILABLE", j.res.status,
          j.res.message);
    CHECK(dt < DETECT_BOUND_S, "UNAVAILABLE %.2f s after SIGSTOP (bound %.0f s)", dt,
          DETECT_BOUND_S);
    CHECK(strcmp(health, "NOT_SERVING") == 0, "health %s right after the hang, want NOT_SERVING",
          health);
    CHECK(wait_gone(victim, 5.0), "the stopped worker %d was not killed", (int)victim);
    CHECK(proc_exists((pid_t)before->pid[0]), "the stopped worker's peer was killed too");
    coord_client_result_free(&j.res);
    if (proc_exists(victim)) {
        kill(victim, SIGKILL); /* never leave a stopped process behind */
    }
}

static void stop_idle(coord_client *cl, const coord_client_info *before)
{
    pid_t victim = (pid_t)before->pid[0];
    double t0 = em_now_s();
    CHECK(kill(victim, SIGSTOP) == 0, "SIGSTOP %d", (int)victim);
    while (strcmp(svc_health(cl, 2000), "SERVING") == 0 && em_now_s() - t0 < 10) {
        usleep(50000);
    }
    double dt = em_now_s() - t0;
    printf("idle: NOT_SERVING %.2f s after SIGSTOP\n", dt);
    CHECK(dt < 10, "an idle stopped worker went unnoticed for 10 s");
    CHECK(wait_gone(victim, 10.0), "the idle stopped worker %d was not killed", (int)victim);
    if (proc_exists(victim)) {
        kill(victim, SIGKILL);
    }
}

int main(void)
{
    svc_model();
    grpc_init();
    const char *extra[] = {
        "--step-timeout-ms", "1000", "--respawn-delay-ms", "1000", "--cluster-secret-file",
        svc_secret_file(),   NULL};
    svc s;
    REQUIRE(svc_start(&s, 2, extra) == EM_OK, "service did not start");
    coord_client *cl = coord_client_create(s.addr), *anon = coord_client_create(s.addr);
    coord_client_set_admin_secret(cl, svc_secret());
    coord_client_info before, after, stranger;
    REQUIRE(coord_client_server_info(cl, &before) == EM_OK && before.serving, "server info");
    REQUIRE(coord_client_server_info(anon, &stranger) == EM_OK, "server info without the secret");
    CHECK(before.pid[0] > 0 && before.pid[1] > 0, "the admin sees the workers' pids");
    CHECK(stranger.pid[0] == 0 && stranger.pid[1] == 0 && stranger.serving,
          "a caller without the secret sees pids %lld %lld", (long long)stranger.pid[0],
          (long long)stranger.pid[1]);
    CHECK(svc_local_worker_pid(&s, 1) == (pid_t)before.pid[1], "worker 1 found in /proc");

    stop_mid_generation(cl, &before);
    CHECK(coord_client_wait_serving(cl, 60000) == EM_OK, "not serving again after the hang");
    REQUIRE(coord_client_server_info(cl, &after) == EM_OK, "server info after the restart");
    CHECK(after.pid[1] != before.pid[1] && after.pid[0] == before.pid[0] &&
              after.generation > before.generation,
          "pids %lld %lld -> %lld %lld, generation %lld -> %lld", (long long)before.pid[0],
          (long long)before.pid[1], (long long)after.pid[0], (long long)after.pid[1],
          (long long)before.generation, (long long)after.generation);
    CHECK(svc_golden_ok(cl, 60, "after the hung worker was replaced"), "golden ids");

    stop_idle(cl, &after);
    CHECK(coord_client_wait_serving(cl, 60000) == EM_OK, "not serving again after the idle hang");
    CHECK(svc_golden_ok(cl, 60, "after the idle hung worker was replaced"), "golden ids");
    CHECK(svc_alive(&s), "the coordinator died");
    coord_client_free(anon);
    coord_client_free(cl);
    svc_stop(&s);
    grpc_shutdown();
    TEST_END();
}

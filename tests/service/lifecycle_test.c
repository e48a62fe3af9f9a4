/* Issue 12 items 4 and 6, re-expressed. (A) The spawner killed (SIGKILL): the coordinator used
 * to stay up NOT_SERVING forever, silently; now it exits with status 3 so that its supervisor
 * restarts the service. (B) A worker that exits at once was restarted twice a second forever;
 * now the delay doubles while it keeps dying (checked through a fake worker script that records
 * each start: the gaps only have lower bounds, which load can only lengthen). (C) SIGTERM
 * drains: a running stream finishes with OK within --drain-grace-ms, a new call is refused,
 * and the coordinator exits 0. (D) With --drain-grace-ms 0 the stream ends with UNAVAILABLE at
 * once. (E) SIGTERM with a stopped (SIGSTOP) worker: the coordinator exits within the unit's
 * 15 s stop timeout (it took 62.7 s). Every wait has a limit. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <grpc/grpc.h>

#include "common/timeutil.h"
#include "coordinator/client.h"
#include "tests/service/svc_harness.h"
#include "tests/service/svc_job.h"
#include "tests/testutil/testutil.h"

#define NOT_EXITED (-1) /* wait_exit: still running (never a wait status) */

/* Waits up to s seconds for the coordinator to exit by itself; its wait status or NOT_EXITED. */
static int wait_exit(svc *sv, double s)
{
    double t0 = em_now_s();
    int st = 0;
    while (em_now_s() - t0 < s) {
        if (waitpid(sv->pid, &st, WNOHANG) == sv->pid) {
            sv->pid = 0;
            return st;
        }
        usleep(20000);
    }
    return NOT_EXITED;
}

static void test_spawner_loss(void)
{
    svc s;
    REQUIRE(svc_start(&s, 2, NULL) == EM_OK, "service did not start");
    pid_t sp = svc_spawner_pid(&s);
    REQUIRE(sp > 0, "no spawner found under pid %d", (int)s.pid);
    CHECK(kill(sp, SIGKILL) == 0, "kill -9 the spawner %d", (int)sp);
    int st = wait_exit(&s, 15.0);
    printf("spawner killed: coordinator wait status %d (exit %d)\n", st,
           st != NOT_EXITED && WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    CHECK(st != NOT_EXITED && WIFEXITED(st) && WEXITSTATUS(st) == 3,
          "coordinator after the spawner's loss: wait status %d, want exit 3", st);
    if (s.pid > 0) {
        svc_stop(&s);
    }
}

static void test_backoff(void)
{
    char script[512], log[512];
    tu_tmp_path(script, sizeof script, "dying_worker.sh");
    tu_tmp_path(log, sizeof log, "dying_worker.starts");
    unlink(log);
    FILE *f = fopen(script, "w");
    REQUIRE(f != NULL, "cannot write %s", script);
    fprintf(f, "#!/bin/sh\ndate +%%s.%%N >> %s\nexit 1\n", log);
    fclose(f);
    chmod(script, 0755);
    const char *extra[] = {
        "--worker-bin", script, "--respawn-delay-ms", "100", "--ready-timeout-ms", "1", NULL};
    svc s;
    REQUIRE(svc_start(&s, 1, extra) == EM_OK, "service did not start");
    usleep(5000000); /* starts at about 0, 0.1, 0.3, 0.7, 1.5, 3.1 s (without backoff: ~45) */
    svc_stop(&s);
    double t[64];
    int n = 0;
    f = fopen(log, "r");
    while (f && n < 64 && fscanf(f, "%lf", &t[n]) == 1) {
        n++;
    }
    if (f) {
        fclose(f);
    }
    printf("dying worker: %d starts in 5 s; gaps:", n);
    for (int i = 1; i < n; i++) {
        printf(" %.2f", t[i] - t[i - 1]);
    }
    printf("\n");
    CHECK(n >= 3, "the dying worker was started %d times", n);
    /* the k-th restart waits at least 0.1 * 2^(k-1) s (capped at 30 s) */
    for (int i = 2; i < n; i++) {
        double want = 0.1 * (double)(1 << (i - 1 < 8 ? i - 1 : 8));
        CHECK(t[i] - t[i - 1] >= 0.9 * want, "restart %d after %.2f s, want >= %.2f s", i,
              t[i] - t[i - 1], want);
    }
    CHECK(n <= 12, "%d starts in 5 s: no backoff", n);
}

/* SIGTERM while a stream runs; returns the coordinator's wait status. */
static int sigterm_mid_stream(const char *grace, int max_tokens, svc_job *j, grpc_status_code *late)
{
    const char *extra[] = {"--drain-grace-ms", grace, NULL};
    svc s;
    REQUIRE(svc_start(&s, 2, extra) == EM_OK, "service did not start");
    REQUIRE(svc_job_start(j, coord_client_create(s.addr), max_tokens, 60000) == EM_OK, "thread");
    CHECK(svc_job_wait_chunks(j, 5, 30), "no 5 chunks within 30 s");
    kill(s.pid, SIGTERM);
    usleep(100000);
    coord_client *late_cl = coord_client_create(s.addr); /* a new caller during the drain */
    coord_client_result r2;
    coord_client_req rq;
    memset(&rq, 0, sizeof rq);
    rq.text = "Once upon a time";
    rq.max_tokens = 4;
    rq.timeout_ms = 5000;
    *late = coord_client_generate(late_cl, &rq, &r2);
    coord_client_result_free(&r2);
    coord_client_free(late_cl);
    svc_job_join(j); /* bounded by the call's deadline */
    int st = wait_exit(&s, 20.0);
    if (s.pid > 0) {
        svc_stop(&s);
    }
    coord_client_free(j->cl);
    return st;
}

static void test_drain(void)
{
    svc_job j;
    grpc_status_code late;
    int st = sigterm_mid_stream("20000", 1000, &j, &late);
    printf("drain: stream status %d with %d ids, late call %d, exit status %d\n", j.res.status,
           j.res.n_output, late, st);
    CHECK(j.res.status == GRPC_STATUS_OK && j.res.n_output == 1000,
          "drained stream: status %d (%s), %d ids", j.res.status, j.res.message, j.res.n_output);
    CHECK(late != GRPC_STATUS_OK, "a call during the drain was served");
    CHECK(st != NOT_EXITED && WIFEXITED(st) && WEXITSTATUS(st) == 0,
          "exit status %d after the drain", st);
    coord_client_result_free(&j.res);

    st = sigterm_mid_stream("0", 2000, &j, &late);
    printf("no grace: stream status %d (%s) after %d ids, exit status %d\n", j.res.status,
           j.res.message, svc_job_chunks(&j), st);
    CHECK(j.res.status == GRPC_STATUS_UNAVAILABLE || j.res.status == GRPC_STATUS_CANCELLED,
          "stream without grace: status %d (%s)", j.res.status, j.res.message);
    CHECK(st != NOT_EXITED && WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
    coord_client_result_free(&j.res);
}

static void test_stopped_worker_exit(void)
{
    svc s;
    REQUIRE(svc_start(&s, 2, NULL) == EM_OK, "service did not start");
    pid_t w = svc_local_worker_pid(&s, 1);
    REQUIRE(w > 0, "worker 1 not found");
    CHECK(kill(w, SIGSTOP) == 0, "SIGSTOP worker 1");
    double t0 = em_now_s();
    kill(s.pid, SIGTERM);
    int st = wait_exit(&s, 15.0);
    printf("SIGTERM with a stopped worker: exit status %d after %.1f s\n", st, em_now_s() - t0);
    CHECK(st != NOT_EXITED && WIFEXITED(st), "the coordinator did not exit within 15 s of SIGTERM");
    if (s.pid > 0) {
        svc_stop(&s);
    }
    kill(w, SIGKILL); /* never leave a stopped process behind (normally already gone) */
}

int main(void)
{
    svc_model();
    grpc_init();
    test_stopped_worker_exit();
    test_spawner_loss();
    test_backoff();
    test_drain();
    grpc_shutdown();
    TEST_END();
}

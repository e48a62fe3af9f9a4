/* Worker loss and recovery. (A) local workers: kill -9 of a worker mid-generation ends the
 * stream with UNAVAILABLE (not by its deadline), health turns NOT_SERVING, the coordinator stays
 * up, the spawner restarts the worker and the group re-forms with a new generation (new gloo
 * prefix): serving resumes with the golden ids. (B) the same with workers started by hand
 * (--worker-addr, the multi-node path): the restarted worker re-joins on its address. */
#undef NDEBUG
#include <assert.h>
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
#include "tests/testutil/testutil.h"

typedef struct gen_job {
    coord_client *cl;
    volatile int n_chunks;
    coord_client_result res;
} gen_job;

static int on_chunk(void *user, const int32_t *ids, int n, const char *text)
{
    gen_job *j = user;
    (void)ids;
    (void)n;
    (void)text;
    __atomic_add_fetch(&j->n_chunks, 1, __ATOMIC_SEQ_CST);
    return 0;
}

static void *gen_run_thread(void *p)
{
    gen_job *j = p;
    coord_client_req rq;
    memset(&rq, 0, sizeof rq);
    rq.text = "Once upon a time";
    rq.max_tokens = 2000;
    rq.ignore_eos = 1;
    rq.temperature = 0;
    rq.top_k = -1;
    rq.timeout_ms = 60000; /* ending by this deadline would be a failure */
    rq.on_chunk = on_chunk;
    rq.user = j;
    coord_client_generate(j->cl, &rq, &j->res);
    return NULL;
}

/* Kills pid mid-generation; checks UNAVAILABLE and NOT_SERVING. Returns failures. */
static int kill_mid_generation(coord_client *cl, pid_t pid, const char *what)
{
    gen_job j;
    memset(&j, 0, sizeof j);
    j.cl = cl;
    pthread_t t;
    assert(pthread_create(&t, NULL, gen_run_thread, &j) == 0);
    while (__atomic_load_n(&j.n_chunks, __ATOMIC_SEQ_CST) < 5) {
        usleep(1000);
    }
    double t0 = em_now_s();
    assert(kill(pid, SIGKILL) == 0);
    pthread_join(t, NULL);
    double dt = em_now_s() - t0;
    int health = coord_client_health(cl, 5000);
    int fails = 0;
    if (j.res.status != GRPC_STATUS_UNAVAILABLE) {
        fprintf(stderr, "FAIL %s: stream ended with status %d (%s), want UNAVAILABLE\n", what,
                j.res.status, j.res.message);
        fails++;
    }
    if (health != 0) {
        fprintf(stderr, "FAIL %s: health %d right after the loss, want NOT_SERVING\n", what,
                health);
        fails++;
    }
    printf("%s: stream ended after %d chunks, %.2f s after kill -9: status %d (%s); health %s\n",
           what, j.n_chunks, dt, j.res.status, j.res.message, health == 0 ? "NOT_SERVING" : "?");
    coord_client_result_free(&j.res);
    return fails;
}

static int test_local(void)
{
    static const char *const extra[] = {"--respawn-delay-ms", "3000", NULL};
    svc s;
    assert(svc_start(&s, 2, extra) == 0);
    coord_client *cl = coord_client_create(s.addr);
    coord_client_info before, after;
    assert(coord_client_server_info(cl, &before) == 0 && before.serving);
    int fails = kill_mid_generation(cl, (pid_t)before.pid[1], "local worker 1");
    if (!svc_alive(&s)) {
        fprintf(stderr, "FAIL: the coordinator died\n");
        return fails + 1;
    }
    if (coord_client_wait_serving(cl, 60000) != 0) {
        fprintf(stderr, "FAIL: not serving again after the restart\n");
        fails++;
    }
    assert(coord_client_server_info(cl, &after) == 0);
    if (after.generation <= before.generation || after.pid[1] == before.pid[1] ||
        after.pid[0] != before.pid[0]) {
        fprintf(stderr, "FAIL: generation %lld -> %lld, worker 1 pid %lld -> %lld\n",
                (long long)before.generation, (long long)after.generation, (long long)before.pid[1],
                (long long)after.pid[1]);
        fails++;
    }
    fails += !svc_golden_ok(cl, 60, "after a local worker restart");
    printf("local: group generation %lld -> %lld, serving resumed: %s\n",
           (long long)before.generation, (long long)after.generation, fails ? "FAIL" : "ok");
    coord_client_free(cl);
    svc_stop(&s);
    return fails;
}

static int test_by_hand(void)
{
    svc w[2], co;
    assert(svc_start_worker(&w[0], "127.0.0.1:0") == 0);
    assert(svc_start_worker(&w[1], "127.0.0.1:0") == 0);
    /* the worker list comes from a config file (the multi-node launch) */
    char conf[512];
    tu_tmp_path(conf, sizeof conf, "cluster.conf");
    FILE *f = fopen(conf, "w");
    assert(f != NULL);
    fprintf(f, "# two workers started by hand\nworker-addr %s\nworker-addr %s\nmax-seqs 8\n",
            w[0].addr, w[1].addr);
    fclose(f);
    const char *extra[] = {"--config", conf, NULL};
    assert(svc_start_coordinator(&co, NULL, 0, extra) == 0);
    coord_client *cl = coord_client_create(co.addr);
    int fails = !svc_golden_ok(cl, 60, "before the kill (hand-started workers)");
    coord_client_info before, after;
    assert(coord_client_server_info(cl, &before) == 0);
    char addr0[64];
    snprintf(addr0, sizeof addr0, "%s", w[0].addr);
    fails += kill_mid_generation(cl, w[0].pid, "hand-started worker 0");
    waitpid(w[0].pid, NULL, 0);
    w[0].pid = 0;
    /* Still NOT_SERVING while the worker is down (nothing restarts it). */
    usleep(300000);
    if (coord_client_health(cl, 5000) != 0) {
        fprintf(stderr, "FAIL: serving without worker 0\n");
        fails++;
    }
    assert(svc_start_worker(&w[0], addr0) == 0); /* restarted on the same address */
    if (coord_client_wait_serving(cl, 60000) != 0) {
        fprintf(stderr, "FAIL: not serving again after worker 0 re-joined\n");
        fails++;
    }
    assert(coord_client_server_info(cl, &after) == 0);
    fails += after.generation <= before.generation;
    fails += !svc_golden_ok(cl, 60, "after the hand-started worker re-joined");
    printf("by hand: group generation %lld -> %lld, serving resumed: %s\n",
           (long long)before.generation, (long long)after.generation, fails ? "FAIL" : "ok");
    /* An idle worker killed and restarted at once on its address: the idle ping sees that it
     * left the group (its Hello reports no generation) and the group re-forms by itself. */
    char addr1[64];
    snprintf(addr1, sizeof addr1, "%s", w[1].addr);
    int64_t gen_before = after.generation;
    kill(w[1].pid, SIGKILL);
    waitpid(w[1].pid, NULL, 0);
    w[1].pid = 0;
    assert(svc_start_worker(&w[1], addr1) == 0);
    int reformed = 0;
    for (int i = 0; i < 600 && !reformed; i++) {
        coord_client_info info;
        reformed = coord_client_server_info(cl, &info) == 0 && info.serving &&
                   info.generation > gen_before;
        usleep(50000);
    }
    if (!reformed) {
        fprintf(stderr, "FAIL: a quickly restarted idle worker was not noticed\n");
        fails++;
    }
    fails += !svc_golden_ok(cl, 60, "after a quick idle restart");
    printf("idle worker restarted at once: group re-formed %s\n", reformed ? "ok" : "FAIL");
    fails += !svc_alive(&co);
    coord_client_free(cl);
    svc_stop(&co);
    svc_stop(&w[0]);
    svc_stop(&w[1]);
    return fails;
}

int main(void)
{
    grpc_init();
    int fails = test_local() + test_by_hand();
    grpc_shutdown();
    printf("worker_kill_test: %d failure(s)\n", fails);
    return fails ? 1 : 0;
}

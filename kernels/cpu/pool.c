/* Persistent thread pool of the CPU backend: workers spin briefly on a generation counter
 * after each job (dispatch then costs well under a microsecond when ops follow each other)
 * and fall back to a futex sleep when idle, so an idle pool burns no CPU. The caller thread
 * is thread 0 and takes part in every job. */
#define _GNU_SOURCE
#include <limits.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <x86intrin.h>

#include "kernels/cpu/cpu_impl.h"

/* Spin budget in TSC ticks before sleeping (~30-60 us on 2-3 GHz parts). */
#define POOL_SPIN_TICKS 100000ull

struct kern_cpu__pool {
    int n_threads;
    pthread_t *threads;
    /* job */
    kern_cpu__job_fn fn;
    void *user;
    /* signalling (all accessed atomically) */
    uint32_t gen;       /* bumped once per job; workers wait for it to change */
    uint32_t pending;   /* workers still running the current job */
    int n_sleeping;     /* workers blocked in futex on gen */
    int caller_waiting; /* caller blocked in futex on pending */
    int quit;
    /* pool_for state */
    int for_n, for_next;
    void (*for_fn)(void *user, int i, int tid);
    void *for_user;
};

static __thread int tls_in_pool, tls_tid; /* tls_tid: pool thread id of a worker */

int kern_cpu__pool_inside(void) { return tls_in_pool; }

static void futex_wait(uint32_t *addr, uint32_t val)
{
    syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(uint32_t *addr)
{
    syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* Spins until *addr != val; 1 if it changed, 0 if the spin budget ran out. */
static int spin_while_equal(const uint32_t *addr, uint32_t val)
{
    uint64_t t0 = __rdtsc();
    for (;;) {
        for (int k = 0; k < 64; k++) {
            if (__atomic_load_n(addr, __ATOMIC_ACQUIRE) != val) return 1;
            _mm_pause();
        }
        if (__rdtsc() - t0 > POOL_SPIN_TICKS) return 0;
    }
}

typedef struct worker_arg {
    kern_cpu__pool *p;
    int tid;
} worker_arg;

static void *worker_main(void *arg)
{
    worker_arg wa = *(worker_arg *)arg;
    free(arg);
    kern_cpu__pool *p = wa.p;
    tls_in_pool = 1;
    tls_tid = wa.tid;
    uint32_t seen = 0;
    for (;;) {
        uint32_t g = __atomic_load_n(&p->gen, __ATOMIC_ACQUIRE);
        while (g == seen) {
            if (!spin_while_equal(&p->gen, seen)) {
                __atomic_fetch_add(&p->n_sleeping, 1, __ATOMIC_SEQ_CST);
                futex_wait(&p->gen, seen);
                __atomic_fetch_sub(&p->n_sleeping, 1, __ATOMIC_SEQ_CST);
            }
            g = __atomic_load_n(&p->gen, __ATOMIC_ACQUIRE);
        }
        seen = g;
        if (__atomic_load_n(&p->quit, __ATOMIC_ACQUIRE)) return NULL;
        p->fn(p->user, wa.tid, p->n_threads);
        if (__atomic_sub_fetch(&p->pending, 1, __ATOMIC_SEQ_CST) == 0 &&
            __atomic_load_n(&p->caller_waiting, __ATOMIC_SEQ_CST))
            futex_wake(&p->pending);
    }
}

/* Publishes the current job to the workers (fn/user already set). */
static void pool_kick(kern_cpu__pool *p)
{
    __atomic_store_n(&p->pending, (uint32_t)(p->n_threads - 1), __ATOMIC_RELAXED);
    __atomic_fetch_add(&p->gen, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&p->n_sleeping, __ATOMIC_SEQ_CST) > 0) futex_wake(&p->gen);
}

static void pool_wait(kern_cpu__pool *p)
{
    for (;;) {
        uint32_t v = __atomic_load_n(&p->pending, __ATOMIC_ACQUIRE);
        if (v == 0) return;
        if (spin_while_equal(&p->pending, v)) continue;
        __atomic_store_n(&p->caller_waiting, 1, __ATOMIC_SEQ_CST);
        futex_wait(&p->pending, v);
        __atomic_store_n(&p->caller_waiting, 0, __ATOMIC_SEQ_CST);
    }
}

kern_cpu__pool *kern_cpu__pool_create(int n_threads)
{
    if (n_threads < 1) n_threads = 1;
    kern_cpu__pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_threads = n_threads;
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return NULL;
    }
    for (int t = 1; t < n_threads; t++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (wa) *wa = (worker_arg){p, t};
        if (!wa || pthread_create(&p->threads[t], NULL, worker_main, wa) != 0) {
            free(wa);
            p->n_threads = t; /* free() joins the workers started so far */
            kern_cpu__pool_free(p);
            return NULL;
        }
    }
    return p;
}

void kern_cpu__pool_free(kern_cpu__pool *p)
{
    if (!p) return;
    if (p->n_threads > 1) {
        __atomic_store_n(&p->quit, 1, __ATOMIC_SEQ_CST);
        __atomic_fetch_add(&p->gen, 1, __ATOMIC_SEQ_CST);
        futex_wake(&p->gen);
        for (int t = 1; t < p->n_threads; t++) pthread_join(p->threads[t], NULL);
    }
    free(p->threads);
    free(p);
}

int kern_cpu__pool_threads(const kern_cpu__pool *p) { return p->n_threads; }

void kern_cpu__pool_run(kern_cpu__pool *p, kern_cpu__job_fn fn, void *user)
{
    if (p->n_threads == 1 || tls_in_pool) {
        fn(user, 0, 1);
        return;
    }
    p->fn = fn;
    p->user = user;
    pool_kick(p);
    tls_in_pool = 1;
    fn(user, 0, p->n_threads);
    tls_in_pool = 0;
    pool_wait(p);
}

static void for_job(void *user, int tid, int n_threads)
{
    kern_cpu__pool *p = user;
    for (;;) {
        int i = __atomic_fetch_add(&p->for_next, 1, __ATOMIC_RELAXED);
        if (i >= p->for_n) return;
        p->for_fn(p->for_user, i, tid);
    }
}

void kern_cpu__pool_for(kern_cpu__pool *p, int n, void (*fn)(void *user, int i, int tid),
                        void *user)
{
    if (n <= 0) return;
    if (n == 1 || p->n_threads == 1 || tls_in_pool) {
        for (int i = 0; i < n; i++) fn(user, i, tls_tid); /* nested: keep our own tid */
        return;
    }
    p->for_n = n;
    p->for_next = 0;
    p->for_fn = fn;
    p->for_user = user;
    kern_cpu__pool_run(p, for_job, p);
}

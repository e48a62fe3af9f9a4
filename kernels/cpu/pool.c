/* Persistent thread pool of the CPU backend. A job is n items handed out by an atomic
 * counter; the caller (thread 0) works on items too and, once none are left, closes the job:
 * workers that had not joined by then skip it, so a worker that is descheduled or asleep
 * never delays the caller (the 2-core build box is oversubscribed). Workers spin briefly on
 * the state word after each job (dispatch well under a microsecond when ops follow each
 * other) and then sleep on a futex, so an idle pool burns no CPU. */
#define _GNU_SOURCE
#include <limits.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <x86intrin.h>

#include "common/assert.h"
#include "kernels/cpu/cpu_impl.h"

/* Spin budget in TSC ticks before sleeping (~30-60 us on 2-3 GHz parts). */
#define POOL_SPIN_TICKS 100000ull
/* state word: | generation (23 bits) | closed (1 bit) | joined workers (8 bits) | */
#define ST_COUNT         0xffu
#define ST_CLOSED        0x100u
#define ST_GEN_SHIFT     9
#define POOL_MAX_THREADS 128

struct kern_cpu__pool {
    int n_threads;
    pthread_t *threads;
    /* current job: written by the caller only while no worker is joined */
    void (*fn)(void *user, int i, int tid);
    void *user;
    int n_items;
    int next;           /* atomic: next item to hand out */
    uint32_t state;     /* atomic, futex word */
    int n_sleeping;     /* atomic: workers blocked in futex */
    int caller_waiting; /* atomic: caller blocked in futex */
    int quit;
};

static __thread int tls_in_pool, tls_tid; /* tls_tid: pool thread id of a worker */

static void futex_wait(uint32_t *addr, uint32_t val)
{
    syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(uint32_t *addr)
{
    syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* Spins while (state & mask) == want; returns the new state, or `want`-matching state when
 * the spin budget ran out (the caller then sleeps). */
static uint32_t spin_while(const uint32_t *st, uint32_t mask, uint32_t want)
{
    uint64_t t0 = __rdtsc();
    for (;;) {
        for (int k = 0; k < 64; k++) {
            uint32_t s = __atomic_load_n(st, __ATOMIC_ACQUIRE);
            if ((s & mask) != want)
                return s;
            _mm_pause();
        }
        if (__rdtsc() - t0 > POOL_SPIN_TICKS)
            return __atomic_load_n(st, __ATOMIC_ACQUIRE);
    }
}

static void run_items(kern_cpu__pool *p, int tid)
{
    int n = p->n_items;
    void (*fn)(void *, int, int) = p->fn;
    void *user = p->user;
    for (;;) {
        int i = __atomic_fetch_add(&p->next, 1, __ATOMIC_RELAXED);
        if (i >= n)
            return;
        fn(user, i, tid);
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
    const uint32_t gen_mask = ~(ST_COUNT | ST_CLOSED);
    uint32_t seen = 0; /* generation bits of the last job seen */
    for (;;) {
        uint32_t s = __atomic_load_n(&p->state, __ATOMIC_ACQUIRE);
        if ((s & gen_mask) == seen) {
            s = spin_while(&p->state, gen_mask, seen);
            if ((s & gen_mask) == seen) {
                __atomic_fetch_add(&p->n_sleeping, 1, __ATOMIC_SEQ_CST);
                futex_wait(&p->state, s);
                __atomic_fetch_sub(&p->n_sleeping, 1, __ATOMIC_SEQ_CST);
            }
            continue;
        }
        seen = s & gen_mask;
        if (__atomic_load_n(&p->quit, __ATOMIC_ACQUIRE))
            return NULL;
        int joined = 0;
        while ((s & gen_mask) == seen && !(s & ST_CLOSED)) {
            if (__atomic_compare_exchange_n(&p->state, &s, s + 1, 0, __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE)) {
                joined = 1;
                break;
            }
        }
        if (!joined)
            continue; /* job already closed (or replaced): skip it */
        run_items(p, wa.tid);
        uint32_t ns = __atomic_sub_fetch(&p->state, 1, __ATOMIC_SEQ_CST);
        if ((ns & ST_COUNT) == 0 && __atomic_load_n(&p->caller_waiting, __ATOMIC_SEQ_CST))
            futex_wake(&p->state);
    }
}

kern_cpu__pool *kern_cpu__pool_create(int n_threads)
{
    if (n_threads < 1)
        n_threads = 1;
    if (n_threads > POOL_MAX_THREADS)
        n_threads = POOL_MAX_THREADS;
    kern_cpu__pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->n_threads = n_threads;
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return NULL;
    }
    for (int t = 1; t < n_threads; t++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (wa)
            *wa = (worker_arg){p, t};
        if (!wa || pthread_create(&p->threads[t], NULL, worker_main, wa) != 0) {
            free(wa);
            p->n_threads = t; /* free() joins the workers started so far */
            kern_cpu__pool_free(p);
            return NULL;
        }
    }
    return p;
}

/* Starts a new generation (job fields already written); wakes sleeping workers. */
static void pool_publish(kern_cpu__pool *p)
{
    uint32_t s = __atomic_load_n(&p->state, __ATOMIC_RELAXED);
    uint32_t gen = ((s >> ST_GEN_SHIFT) + 1) & ((1u << (32 - ST_GEN_SHIFT)) - 1);
    __atomic_store_n(&p->state, gen << ST_GEN_SHIFT, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&p->n_sleeping, __ATOMIC_SEQ_CST) > 0)
        futex_wake(&p->state);
}

/* Closes the current job and waits until the workers that joined it have left. */
static void pool_close_wait(kern_cpu__pool *p)
{
    uint32_t s = __atomic_or_fetch(&p->state, ST_CLOSED, __ATOMIC_SEQ_CST);
    while (s & ST_COUNT) {
        s = spin_while(&p->state, ST_COUNT, s & ST_COUNT);
        if (!(s & ST_COUNT))
            break;
        __atomic_store_n(&p->caller_waiting, 1, __ATOMIC_SEQ_CST);
        s = __atomic_load_n(&p->state, __ATOMIC_SEQ_CST);
        if (s & ST_COUNT)
            futex_wait(&p->state, s);
        __atomic_store_n(&p->caller_waiting, 0, __ATOMIC_SEQ_CST);
        s = __atomic_load_n(&p->state, __ATOMIC_ACQUIRE);
    }
}

void kern_cpu__pool_free(kern_cpu__pool *p)
{
    if (!p)
        return;
    if (p->n_threads > 1) {
        __atomic_store_n(&p->quit, 1, __ATOMIC_SEQ_CST);
        pool_publish(p);
        futex_wake(&p->state);
        for (int t = 1; t < p->n_threads; t++)
            pthread_join(p->threads[t], NULL);
    }
    free(p->threads);
    free(p);
}

int kern_cpu__pool_threads(const kern_cpu__pool *p)
{
    return p->n_threads;
}

void kern_cpu__pool_for(kern_cpu__pool *p, int n, void (*fn)(void *user, int i, int tid),
                        void *user)
{
    if (n <= 0)
        return;
    if (n == 1 || p->n_threads == 1 || tls_in_pool) {
        for (int i = 0; i < n; i++)
            fn(user, i, tls_tid); /* nested: keep our own tid */
        return;
    }
    p->fn = fn;
    p->user = user;
    p->n_items = n;
    __atomic_store_n(&p->next, 0, __ATOMIC_RELAXED);
    pool_publish(p);
    tls_in_pool = 1;
    run_items(p, 0);
    tls_in_pool = 0;
    pool_close_wait(p);
    /* the caller runs items until none is left, so every item was handed out */
    EM_ASSERT(__atomic_load_n(&p->next, __ATOMIC_RELAXED) >= n);
}

/* The fast CPU backend object: creates the thread pool and the kern_ops vtable, and exposes
 * the pool to the engine (kern_cpu_parallel_for) for attention over sequences x KV heads. */
#include <stdlib.h>

#include "kernels/cpu/cpu_impl.h"
#include "kernels/cpu/kern_cpu.h"

kern_ops *kern_ops_cpu_create(int n_threads)
{
    return kern_ops_cpu_create_mode(n_threads, KERN_ACT_F32);
}

kern_ops *kern_ops_cpu_create_mode(int n_threads, kern_act_mode m)
{
    if (m != KERN_ACT_F32 && m != KERN_ACT_Q8)
        return NULL;
    if (n_threads < 1)
        n_threads = 1;
    kern_cpu__ctx *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->pool = kern_cpu__pool_create(n_threads);
    if (!c->pool) {
        free(c);
        return NULL;
    }
    c->n_threads = kern_cpu__pool_threads(c->pool);
    c->act = m;
    pthread_mutex_init(&c->rope_mu, NULL);
    c->ops = (kern_ops){
        .name = m == KERN_ACT_Q8 ? "cpu-q8" : "cpu",
        .matmul = kern_cpu__matmul,
        .rmsnorm = kern_cpu__rmsnorm,
        .rope = kern_cpu__rope,
        .swiglu = kern_cpu__swiglu,
        .attn = kern_cpu__attn,
        .parallel_for = kern_cpu__parallel_for,
        .ctx = c,
    };
    return &c->ops;
}

void kern_ops_cpu_free(kern_ops *ops)
{
    if (!ops)
        return;
    kern_cpu__ctx *c = (kern_cpu__ctx *)ops;
    kern_cpu__pool_free(c->pool);
    for (int s = 0; s < KERN_CPU__ROPE_SLOTS; s++)
        free(c->rope[s].freq);
    pthread_mutex_destroy(&c->rope_mu);
    free(c);
}

int kern_cpu_n_threads(const kern_ops *ops)
{
    return ((const kern_cpu__ctx *)ops)->n_threads;
}

void kern_cpu__parallel_for(void *ctx, int n, void (*fn)(void *user, int i, int tid), void *user)
{
    kern_cpu__pool_for(((kern_cpu__ctx *)ctx)->pool, n, fn, user);
}

void kern_cpu_parallel_for(kern_ops *ops, int n, void (*fn)(void *user, int i, int tid), void *user)
{
    kern_cpu__parallel_for(ops->ctx, n, fn, user);
}

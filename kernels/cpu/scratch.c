/* Per-thread scratch memory of the CPU kernels (attention scores, converted f16 weight
 * tiles): one growable buffer per slot and thread, kept across calls and freed by a
 * pthread key destructor when the thread exits (pool workers, engine threads, main). */
#include <stdlib.h>

#include "common/assert.h"
#include "kernels/cpu/cpu_impl.h"

typedef struct scratch_set {
    float *buf[KERN_CPU__SCRATCH_SLOTS];
    size_t cap[KERN_CPU__SCRATCH_SLOTS]; /* floats */
} scratch_set;

static pthread_key_t g_key;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void set_free(void *p)
{
    scratch_set *s = p;
    for (int i = 0; i < KERN_CPU__SCRATCH_SLOTS; i++)
        free(s->buf[i]);
    free(s);
}

static void key_init(void)
{
    pthread_key_create(&g_key, set_free);
}

float *kern_cpu__scratch(int slot, size_t n)
{
    EM_ASSERT(slot >= 0 && slot < KERN_CPU__SCRATCH_SLOTS);
    pthread_once(&g_once, key_init);
    scratch_set *s = pthread_getspecific(g_key);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return NULL;
        if (pthread_setspecific(g_key, s) != 0) {
            free(s);
            return NULL;
        }
    }
    if (s->cap[slot] < n) {
        float *nb = aligned_alloc(64, ((n * sizeof(float)) + 63) & ~(size_t)63);
        if (!nb)
            return NULL;
        free(s->buf[slot]);
        s->buf[slot] = nb;
        s->cap[slot] = n;
    }
    return s->buf[slot];
}

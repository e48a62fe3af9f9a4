/* Requests and their board for the scheduler tests (see sched_board.h). */
#include "tests/coordinator/sched_board.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/testutil/testutil.h"

static void on_emit(void *user, const coord_event *ev)
{
    sb_user *u = user;
    sb_result *r = &u->b->res[u->i];
    if (ev->kind == COORD_EV_COMPLETE) {
        r->finished = 1;
        r->ok = 1;
        r->n_ids = ev->n_output < SB_MAX_IDS ? ev->n_output : SB_MAX_IDS;
        memcpy(r->ids, ev->output_ids, sizeof(int32_t) * (size_t)r->n_ids);
    } else if (ev->kind == COORD_EV_ERROR) {
        r->finished = 1;
        r->status = ev->status;
        snprintf(r->message, sizeof r->message, "%s", ev->message ? ev->message : "");
    }
}

static void on_release(void *user)
{
    sb_user *u = user;
    pthread_mutex_lock(&u->b->mu);
    u->b->res[u->i].done = 1;
    u->b->released++;
    pthread_cond_broadcast(&u->b->cv);
    pthread_mutex_unlock(&u->b->mu);
}

static const coord_sink k_sink = {on_emit, on_release};

void sb_board_init(sb_board *b)
{
    memset(b, 0, sizeof *b);
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
}

void sb_board_wait(sb_board *b, int n)
{
    pthread_mutex_lock(&b->mu);
    while (b->released < n)
        pthread_cond_wait(&b->cv, &b->mu);
    pthread_mutex_unlock(&b->mu);
}

void sb_set_kv(coord_req *q, const char *kv)
{
    char buf[256], err[256];
    snprintf(buf, sizeof buf, "%s", kv);
    for (char *save, *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(t, '=');
        REQUIRE(eq != NULL, "bad kv %s", t);
        *eq = 0;
        REQUIRE(ems_config_set(&q->kv, t, eq + 1, err, sizeof err) == EM_OK, "%s", err);
        q->kv_key[q->n_kv] = strdup(t);
        q->kv_val[q->n_kv++] = strdup(eq + 1);
    }
}

coord_req *sb_make_req(const model *m, int i, int n_prompt, int gen, const char *kv, sb_user *u)
{
    coord_req *q = calloc(1, sizeof *q);
    REQUIRE(q != NULL, "out of memory");
    snprintf(q->id, sizeof q->id, "req-%d", i);
    q->prompt = malloc(sizeof(int32_t) * (size_t)n_prompt);
    REQUIRE(q->prompt != NULL, "out of memory");
    for (int j = 0; j < n_prompt; j++)
        q->prompt[j] = 3 + (7 * j + 13 * i + j * j) % (m->hp.n_vocab - 3);
    q->n_prompt = n_prompt;
    sampler_params_default(&q->sp);
    q->sp.temperature = 0;
    stop_params_default(&q->stop);
    q->stop.max_tokens = gen;
    q->stop.ignore_eos = 1;
    ems_config_default(&q->kv);
    sb_set_kv(q, kv);
    q->sink = &k_sink;
    q->sink_user = u;
    return q;
}

/* One HTTP generation in flight: the scheduler's sink (it runs on the scheduler thread and only
 * appends under the generation's mutex), the connection thread's waits (which notice a client
 * that went away and cancel its request), and the server-sent-event stream. A generation has
 * two references while it runs: the connection's and the scheduler's (dropped by release). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "coordinator/http_impl.h"

#define WAIT_SLICE_MS 200 /* how often a waiting connection checks that its client is there */
#define SSE_BLOCK     (16u << 10)

/* ---- pending tokens ------------------------------------------------------------------------- */

void coord__http_acc_free(http_acc *a)
{
    free(a->text);
    free(a->ids);
    free(a->lps);
    memset(a, 0, sizeof *a);
}

static em_status acc_add(http_acc *a, const coord_event *ev, int keep_lps)
{
    if (a->len + ev->text_len + 1 > a->cap) {
        size_t cap = (a->len + ev->text_len + 1) * 2;
        char *t = realloc(a->text, cap);
        if (t == NULL) {
            return EM_ENOMEM;
        }
        a->text = t;
        a->cap = cap;
    }
    memcpy(a->text + a->len, ev->text, ev->text_len);
    a->len += ev->text_len;
    a->text[a->len] = 0;
    if (a->n + ev->n_ids > a->cap_n) {
        int cap = (a->n + ev->n_ids) * 2;
        int32_t *ids = realloc(a->ids, sizeof *ids * (size_t)cap);
        if (ids == NULL) {
            return EM_ENOMEM;
        }
        a->ids = ids;
        if (keep_lps) {
            coord_logprob *l = realloc(a->lps, sizeof *l * (size_t)cap);
            if (l == NULL) {
                return EM_ENOMEM;
            }
            a->lps = l;
        }
        a->cap_n = cap;
    }
    for (int i = 0; i < ev->n_ids; i++) {
        a->ids[a->n] = ev->ids[i];
        if (keep_lps && ev->logprobs) {
            a->lps[a->n] = ev->logprobs[i];
        } else if (keep_lps) {
            memset(&a->lps[a->n], 0, sizeof a->lps[a->n]);
        }
        a->n++;
    }
    return EM_OK;
}

/* ---- the sink (scheduler thread) ------------------------------------------------------------ */

static void gen_free(http_gen *g)
{
    if (g->counted) {
        __atomic_sub_fetch(&g->h->streams, 1, __ATOMIC_SEQ_CST);
    }
    coord__http_acc_free(&g->acc);
    free(g->full_text);
    free(g->out);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g);
}

static void gen_unref(http_gen *g)
{
    pthread_mutex_lock(&g->mu);
    int left = --g->refs;
    pthread_mutex_unlock(&g->mu);
    if (left == 0) {
        gen_free(g);
    }
}

static void fail_locked(http_gen *g, em_status st, const char *msg)
{
    if (!g->done) {
        g->done = 1;
        g->err = st;
        snprintf(g->err_msg, sizeof g->err_msg, "%s", msg);
    }
}

static void complete_locked(http_gen *g, const coord_event *ev)
{
    g->full_text = malloc(ev->full_text_len + 1);
    if (g->full_text == NULL) {
        fail_locked(g, EM_ENOMEM, "out of memory");
        return;
    }
    memcpy(g->full_text, ev->full_text, ev->full_text_len);
    g->full_text[ev->full_text_len] = 0;
    g->full_len = ev->full_text_len;
    snprintf(g->finish, sizeof g->finish, "%s", ev->finish_reason);
    g->prompt_tokens = ev->prompt_tokens;
    g->completion_tokens = ev->completion_tokens;
    g->kv_kept = ev->kv_entries_kept;
    g->kv_full = ev->kv_entries_full;
    g->done = 1;
    g->err = EM_OK;
}

static void sink_emit(void *user, const coord_event *ev)
{
    http_gen *g = user;
    pthread_mutex_lock(&g->mu);
    if (g->done) {
        pthread_mutex_unlock(&g->mu);
        return;
    }
    switch (ev->kind) {
    case COORD_EV_CHUNK:
        g->prompt_tokens = ev->prompt_tokens;
        g->completion_tokens = ev->completion_tokens;
        if (acc_add(&g->acc, ev, g->want_lp) != EM_OK) {
            fail_locked(g, EM_ENOMEM, "out of memory");
        }
        break;
    case COORD_EV_COMPLETE:
        complete_locked(g, ev);
        break;
    case COORD_EV_ERROR:
        fail_locked(g, ev->status, ev->message ? ev->message : em_status_str(ev->status));
        break;
    }
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void sink_release(void *user)
{
    http_gen *g = user;
    pthread_mutex_lock(&g->mu);
    g->sched_held = 0;
    fail_locked(g, EM_ECANCELED, "cancelled");
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    gen_unref(g);
}

/* ---- start, wait, cancel (connection thread) ------------------------------------------------ */

em_status coord__http_gen_start(coord_http *h, struct MHD_Connection *c, const http_parsed *p,
                                http_gen **out, char *err, size_t errlen)
{
    *out = NULL;
    http_gen *g = calloc(1, sizeof *g);
    if (g == NULL) {
        return EM_ENOMEM;
    }
    uint64_t serial = __atomic_add_fetch(&h->serial, 1, __ATOMIC_RELAXED);
    snprintf(g->id, sizeof g->id, "%s-%llx%05llx", p->api == HTTP_API_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)h->created, (unsigned long long)serial);
    coord_req_spec sp = p->sp;
    sp.request_id = g->id;
    static const coord_req_names names = {"", "", "prompt", "prompt", "prompt", "prompt"};
    coord_req *r = NULL;
    em_status st = coord_req_from_spec(&sp, &names, &h->pc, serial, &r, err, errlen);
    if (st != EM_OK) {
        free(g);
        return st;
    }
    g->h = h;
    g->conn = c;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    g->fd = ci ? ci->connect_fd : -1;
    g->api = p->api;
    g->stream = p->stream;
    g->include_usage = p->include_usage;
    g->want_lp = p->want_logprobs;
    g->n_top = p->n_top;
    g->prev_id = r->n_prompt > 0 ? r->prompt[r->n_prompt - 1] : -1;
    g->prompt_tokens = r->n_prompt;
    g->created = (int64_t)time(NULL);
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->refs = 2; /* the connection's and the scheduler's */
    g->sched_held = 1;
    r->sink = &h->sink;
    r->sink_user = g;
    if (coord__http_draining(h) || !coord__http_enter(h)) {
        coord_req_free(r);
        gen_free(g);
        snprintf(err, errlen, "server shutting down");
        return EM_EUNAVAILABLE;
    }
    if (!coord_group_serving(h->o.group)) {
        snprintf(err, errlen, "not serving: not every worker has joined the group (yet)");
        coord__http_leave(h);
        coord_req_free(r);
        gen_free(g);
        return EM_EUNAVAILABLE;
    }
    /* generation takes as long as it takes: no idle timeout while we wait for the scheduler */
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
    g->counted = 1;
    __atomic_add_fetch(&h->streams, 1, __ATOMIC_SEQ_CST);
    coord_sched_submit(h->o.sched, r); /* from here on, events may arrive */
    coord__http_leave(h);
    *out = g;
    return EM_OK;
}

/* 1 when the client closed its side of the connection (a peek reads end of file). */
static int client_gone(int fd)
{
    if (fd < 0) {
        return 0;
    }
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static void cancel(http_gen *g)
{
    pthread_mutex_lock(&g->mu);
    int held = g->sched_held;
    pthread_mutex_unlock(&g->mu);
    if (held && coord__http_enter(g->h)) {
        coord_sched_cancel(g->h->o.sched, g); /* the scheduler releases it (no more events) */
        coord__http_leave(g->h);
    }
}

static void after_ms(struct timespec *ts, long ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_nsec += ms * 1000000L;
    ts->tv_sec += ts->tv_nsec / 1000000000L;
    ts->tv_nsec %= 1000000000L;
}

static int reached(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return now.tv_sec > t->tv_sec || (now.tv_sec == t->tv_sec && now.tv_nsec >= t->tv_nsec);
}

/* The client is looked at every WAIT_SLICE_MS, however often tokens wake us. */
em_status coord__http_gen_wait(http_gen *g, int want_tokens)
{
    struct timespec check;
    after_ms(&check, WAIT_SLICE_MS);
    pthread_mutex_lock(&g->mu);
    while (!g->done && !(want_tokens && (g->acc.n > 0 || g->acc.len > 0))) {
        pthread_cond_timedwait(&g->cv, &g->mu, &check);
        if (!reached(&check)) {
            continue;
        }
        if (client_gone(g->fd)) {
            pthread_mutex_unlock(&g->mu);
            cancel(g);
            return EM_ECANCELED;
        }
        after_ms(&check, WAIT_SLICE_MS);
    }
    pthread_mutex_unlock(&g->mu);
    return EM_OK;
}

void coord__http_gen_take(http_gen *g, http_acc *a)
{
    pthread_mutex_lock(&g->mu);
    *a = g->acc;
    memset(&g->acc, 0, sizeof g->acc);
    pthread_mutex_unlock(&g->mu);
}

void coord__http_gen_put(http_gen *g)
{
    if (g == NULL) {
        return;
    }
    cancel(g);
    gen_unref(g);
}

/* ---- server-sent events --------------------------------------------------------------------- */

static em_status out_add(http_gen *g, const char *s, size_t n)
{
    char *o = realloc(g->out, g->out_len + n + 1);
    if (o == NULL) {
        return EM_ENOMEM;
    }
    memcpy(o + g->out_len, s, n);
    g->out = o;
    g->out_len += n;
    return EM_OK;
}

/* "data: JSON\n\n" (takes json; NULL = out of memory). */
static em_status out_event(http_gen *g, char *json)
{
    if (json == NULL) {
        return EM_ENOMEM;
    }
    em_status rc = out_add(g, "data: ", 6);
    rc = rc != EM_OK ? rc : out_add(g, json, strlen(json));
    rc = rc != EM_OK ? rc : out_add(g, "\n\n", 2);
    free(json);
    return rc;
}

/* Formats what is pending; at the end, the last chunk, the usage chunk and [DONE]. */
static em_status format_next(http_gen *g)
{
    http_acc a;
    coord__http_gen_take(g, &a);
    pthread_mutex_lock(&g->mu);
    int done = g->done;
    em_status err = g->err;
    pthread_mutex_unlock(&g->mu);
    em_status rc = EM_OK;
    if (!g->started && g->api == HTTP_API_CHAT) {
        http_acc none;
        memset(&none, 0, sizeof none);
        rc = out_event(g, coord__http_render_chunk(g, &none, NULL, 1));
    }
    g->started = 1;
    if (rc == EM_OK && (a.n > 0 || a.len > 0 || (done && err == EM_OK))) {
        rc = out_event(g,
                       coord__http_render_chunk(g, &a, done && err == EM_OK ? g->finish : NULL, 0));
    }
    coord__http_acc_free(&a);
    if (rc == EM_OK && done) {
        if (err != EM_OK) {
            rc = out_event(
                g, coord__http_render_error(
                       g->err_msg, coord__http_error_type(coord__http_status_of(err)), NULL, NULL));
        } else if (g->include_usage) {
            rc = out_event(g, coord__http_render_usage_chunk(g));
        }
        rc = rc != EM_OK ? rc : out_add(g, "data: [DONE]\n\n", 14);
        g->ended = 1;
    }
    return rc;
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    http_gen *g = cls;
    while (g->out_off == g->out_len) {
        g->out_off = g->out_len = 0;
        if (g->ended) {
            /* back to the daemon's idle timeout for the next request on this connection */
            MHD_set_connection_option(g->conn, MHD_CONNECTION_OPTION_TIMEOUT,
                                      COORD_HTTP_IDLE_TIMEOUT_S);
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        if (coord__http_gen_wait(g, 1) != EM_OK || format_next(g) != EM_OK) {
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
    size_t n = g->out_len - g->out_off < max ? g->out_len - g->out_off : max;
    memcpy(buf, g->out + g->out_off, n);
    g->out_off += n;
    return (ssize_t)n;
}

static void sse_free(void *cls)
{
    coord__http_gen_put(cls);
}

struct MHD_Response *coord__http_gen_sse(http_gen *g)
{
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, SSE_BLOCK, sse_read, g, sse_free);
    if (r == NULL) {
        coord__http_gen_put(g);
        return NULL;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    return r;
}

void coord__http_sink_init(coord_sink *s)
{
    s->emit = sink_emit;
    s->release = sink_release;
}

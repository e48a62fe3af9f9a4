/* POST /v1/completions and /v1/chat/completions: parse, validate and submit (http_parse.c,
 * req_spec.h), wait for the first tokens so that a request that fails at once still gets its
 * HTTP status (503 when the workers are gone), then answer with one JSON object or a stream of
 * server-sent events. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/http_impl.h"

/* The error a generation ended with, as an HTTP error reply. */
static enum MHD_Result reply_failed(struct MHD_Connection *c, http_gen *g)
{
    pthread_mutex_lock(&g->mu);
    em_status st = g->err;
    char msg[sizeof g->err_msg];
    memcpy(msg, g->err_msg, sizeof msg);
    pthread_mutex_unlock(&g->mu);
    return coord__http_error(c, coord__http_status_of(st), msg, NULL, NULL);
}

static int failed(http_gen *g)
{
    pthread_mutex_lock(&g->mu);
    int f = g->done && g->err != EM_OK;
    pthread_mutex_unlock(&g->mu);
    return f;
}

static enum MHD_Result reply_whole(struct MHD_Connection *c, http_gen *g, http_gen **hold)
{
    if (coord__http_gen_wait(g, 0) != EM_OK) {
        coord__http_gen_put(g);
        return MHD_NO; /* the client went away: close */
    }
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, COORD_HTTP_IDLE_TIMEOUT_S);
    enum MHD_Result rc;
    if (failed(g)) {
        rc = reply_failed(c, g);
    } else {
        char *body = coord__http_render_final(g);
        rc = body ? coord__http_reply(c, MHD_HTTP_OK, "application/json", body, strlen(body))
                  : MHD_NO;
        free(body);
    }
    *hold = g; /* put when the reply has been written (or the connection closed) */
    return rc;
}

static enum MHD_Result reply_stream(struct MHD_Connection *c, http_gen *g)
{
    if (coord__http_gen_wait(g, 1) != EM_OK) {
        coord__http_gen_put(g);
        return MHD_NO;
    }
    if (failed(g)) { /* nothing was generated: a plain error reply */
        MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, COORD_HTTP_IDLE_TIMEOUT_S);
        enum MHD_Result rc = reply_failed(c, g);
        coord__http_gen_put(g);
        return rc;
    }
    struct MHD_Response *r = coord__http_gen_sse(g); /* owns g from here */
    if (r == NULL) {
        return MHD_NO;
    }
    enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return rc;
}

enum MHD_Result coord__http_generate(coord_http *h, struct MHD_Connection *c, http_api api,
                                     const char *body, size_t len, http_gen **hold)
{
    char err[768] = "";
    unsigned status = MHD_HTTP_BAD_REQUEST;
    http_parsed p;
    http_gen *g = NULL;
    em_status st = coord__http_parse(h, api, body, len, &p, &status, err, sizeof err);
    if (st == EM_OK) {
        st = coord__http_gen_start(h, c, &p, &g, err, sizeof err);
        status = coord__http_status_of(st);
    }
    int stream = p.stream;
    coord__http_parsed_free(&p);
    if (st != EM_OK) {
        return coord__http_error(c, status, err[0] ? err : em_status_str(st), NULL,
                                 status == MHD_HTTP_NOT_FOUND ? "model_not_found" : NULL);
    }
    return stream ? reply_stream(c, g) : reply_whole(c, g, hold);
}

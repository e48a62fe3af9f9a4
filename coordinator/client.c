/* Blocking C client of emserve.v1 (see client.h). */
#include "coordinator/client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "common/timeutil.h"
#include "proto/c/emserve/v1/emserve.pb-c.h"
#include "proto/grpc/health/v1/health.pb-c.h"
#include "rpc/rpc_tls.h"
#include "rpc/rpc_util.h"

struct coord_client {
    grpc_channel *ch;
    char secret[RPC_SECRET_MAX + 1]; /* admin secret for GetServerInfo ("" none) */
};

coord_client *coord_client_create(const char *addr)
{
    return coord_client_create_tls(addr, NULL);
}

coord_client *coord_client_create_tls(const char *addr, const rpc_tls *tls)
{
    coord_client *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return NULL;
    }
    grpc_channel_credentials *cr = rpc_tls_channel_credentials(tls);
    c->ch = grpc_channel_create(addr, cr, rpc_channel_args());
    grpc_channel_credentials_release(cr);
    return c;
}

void coord_client_free(coord_client *c)
{
    if (c) {
        grpc_channel_destroy(c->ch);
        free(c);
    }
}

grpc_channel *coord_client_channel(coord_client *c)
{
    return c->ch;
}

void coord_client_result_free(coord_client_result *r)
{
    free(r->ids);
    free(r->output_ids);
    free(r->text);
    free(r->t_chunk_s);
    memset(r, 0, sizeof *r);
}

static int batch_wait(grpc_call *call, grpc_completion_queue *cq, grpc_op *ops, size_t n, void *tag)
{
    if (grpc_call_start_batch(call, ops, n, tag, NULL) != GRPC_CALL_OK) {
        return 0;
    }
    grpc_event ev = grpc_completion_queue_pluck(cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    return ev.success;
}

static void on_message(coord_client_result *res, const Emserve__V1__GenerateResponse *m, double t0,
                       size_t *text_cap)
{
    if (m->response_case == EMSERVE__V1__GENERATE_RESPONSE__RESPONSE_CHUNK) {
        const Emserve__V1__Chunk *ch = m->chunk;
        double t = em_now_s() - t0;
        if (res->n_chunks == 0) {
            res->t_first_s = t;
        }
        double *tc = realloc(res->t_chunk_s, sizeof(double) * (size_t)(res->n_chunks + 1));
        int32_t *ids = realloc(res->ids, sizeof(int32_t) * (res->n_ids + ch->n_token_ids + 1));
        if (tc) {
            res->t_chunk_s = tc;
            tc[res->n_chunks] = t;
        }
        if (ids) {
            res->ids = ids;
            memcpy(ids + res->n_ids, ch->token_ids, sizeof(int32_t) * ch->n_token_ids);
            res->n_ids += (int)ch->n_token_ids;
        }
        size_t tl = strlen(ch->text), cur = res->text ? strlen(res->text) : 0;
        if (cur + tl + 1 > *text_cap) {
            size_t nc = (cur + tl + 1) * 2;
            char *nt = realloc(res->text, nc);
            if (nt) {
                if (res->text == NULL) {
                    nt[0] = 0;
                }
                res->text = nt;
                *text_cap = nc;
            }
        }
        if (res->text && cur + tl + 1 <= *text_cap) {
            memcpy(res->text + cur, ch->text, tl + 1);
        }
        res->n_chunks++;
        res->prompt_tokens = ch->prompt_tokens;
        res->completion_tokens = ch->completion_tokens;
    } else if (m->response_case == EMSERVE__V1__GENERATE_RESPONSE__RESPONSE_COMPLETE) {
        const Emserve__V1__Complete *co = m->complete;
        res->got_complete = 1;
        snprintf(res->finish_reason, sizeof res->finish_reason, "%s", co->finish_reason);
        free(res->output_ids);
        res->output_ids = malloc(sizeof(int32_t) * (co->n_output_ids + 1));
        if (res->output_ids) {
            memcpy(res->output_ids, co->output_ids, sizeof(int32_t) * co->n_output_ids);
            res->n_output = (int)co->n_output_ids;
        }
        if (co->usage) {
            res->prompt_tokens = co->usage->prompt_tokens;
            res->completion_tokens = co->usage->completion_tokens;
            res->kv_entries_kept = co->usage->kv_entries_kept;
            res->kv_entries_full = co->usage->kv_entries_full;
        }
    }
}

/* Runs a server-streaming Generate with an already packed request. */
static grpc_status_code run_stream(coord_client *c, grpc_byte_buffer *send_bb, long timeout_ms,
                                   const coord_client_req *rq, coord_client_result *res)
{
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_call *call =
        grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                 grpc_slice_from_static_string("/emserve.v1.Emserve/Generate"),
                                 NULL, rpc_deadline_ms(timeout_ms), NULL);
    grpc_metadata_array init_md, trail_md;
    grpc_metadata_array_init(&init_md);
    grpc_metadata_array_init(&trail_md);
    grpc_slice details = grpc_empty_slice();
    double t0 = em_now_s();
    size_t text_cap = 0;
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send_bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &init_md;
    int ok = batch_wait(call, cq, ops, 4, (void *)1);
    while (ok) {
        grpc_byte_buffer *bb = NULL;
        memset(ops, 0, sizeof ops);
        ops[0].op = GRPC_OP_RECV_MESSAGE;
        ops[0].data.recv_message.recv_message = &bb;
        if (!batch_wait(call, cq, ops, 1, (void *)2) || bb == NULL) {
            break;
        }
        Emserve__V1__GenerateResponse *m = (Emserve__V1__GenerateResponse *)rpc_unpack(
            bb, &emserve__v1__generate_response__descriptor);
        grpc_byte_buffer_destroy(bb);
        if (m == NULL) {
            break;
        }
        int cancel = 0;
        on_message(res, m, t0, &text_cap);
        if (rq && rq->on_chunk &&
            m->response_case == EMSERVE__V1__GENERATE_RESPONSE__RESPONSE_CHUNK) {
            cancel = rq->on_chunk(rq->user, m->chunk->token_ids, (int)m->chunk->n_token_ids,
                                  m->chunk->text);
        }
        protobuf_c_message_free_unpacked(&m->base, NULL);
        if (cancel) {
            grpc_call_cancel(call, NULL);
            break;
        }
    }
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[0].data.recv_status_on_client.trailing_metadata = &trail_md;
    ops[0].data.recv_status_on_client.status = &res->status;
    ops[0].data.recv_status_on_client.status_details = &details;
    res->status = GRPC_STATUS_UNKNOWN;
    batch_wait(call, cq, ops, 1, (void *)3);
    res->t_total_s = em_now_s() - t0;
    rpc_slice_str(details, res->message, sizeof res->message);
    if (res->text == NULL) {
        res->text = calloc(1, 1);
    }
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&init_md);
    grpc_metadata_array_destroy(&trail_md);
    grpc_call_unref(call);
    rpc_pluck_cq_destroy(cq);
    return res->status;
}

int coord_client_chunk_to_stdout(void *user, const int32_t *ids, int n, const char *text)
{
    (void)user;
    (void)ids;
    (void)n;
    fputs(text, stdout);
    fflush(stdout);
    return 0;
}

/* The protobuf form of n chat messages (pointing into m): 1, or 0 when out of memory. */
static int chat_messages(const coord_chat_msg *m, int n, Emserve__V1__ChatMessage **msgs,
                         Emserve__V1__ChatMessage ***ptrs)
{
    *msgs = malloc(sizeof **msgs * (size_t)n);
    *ptrs = malloc(sizeof **ptrs * (size_t)n);
    if (*msgs == NULL || *ptrs == NULL) {
        free(*msgs);
        free(*ptrs);
        *msgs = NULL;
        *ptrs = NULL;
        return 0;
    }
    for (int i = 0; i < n; i++) {
        emserve__v1__chat_message__init(&(*msgs)[i]);
        (*msgs)[i].role = (char *)(m[i].role ? m[i].role : "");
        (*msgs)[i].content = (char *)(m[i].content ? m[i].content : "");
        (*ptrs)[i] = &(*msgs)[i];
    }
    return 1;
}

grpc_status_code coord_client_generate(coord_client *c, const coord_client_req *rq,
                                       coord_client_result *res)
{
    memset(res, 0, sizeof *res);
    Emserve__V1__GenerateRequest m = EMSERVE__V1__GENERATE_REQUEST__INIT;
    Emserve__V1__TokenIds tids = EMSERVE__V1__TOKEN_IDS__INIT;
    Emserve__V1__SamplingParams sp = EMSERVE__V1__SAMPLING_PARAMS__INIT;
    Emserve__V1__StoppingParams stp = EMSERVE__V1__STOPPING_PARAMS__INIT;
    Emserve__V1__KvConfig kv = EMSERVE__V1__KV_CONFIG__INIT;
    Emserve__V1__KvParam params[32], *pp[32];
    Emserve__V1__ChatMessage *msgs = NULL, **mp = NULL;
    if (rq->request_id) {
        m.request_id = (char *)rq->request_id;
    }
    if (rq->text) {
        m.input_case = EMSERVE__V1__GENERATE_REQUEST__INPUT_TEXT;
        m.text = (char *)rq->text;
    } else if (rq->ids || rq->n_messages <= 0) {
        tids.n_ids = (size_t)rq->n_ids;
        tids.ids = (int32_t *)rq->ids;
        m.input_case = EMSERVE__V1__GENERATE_REQUEST__INPUT_TOKENS;
        m.tokens = &tids;
    }
    if (rq->n_messages > 0 && !chat_messages(rq->messages, rq->n_messages, &msgs, &mp)) {
        memset(res, 0, sizeof *res);
        res->status = GRPC_STATUS_RESOURCE_EXHAUSTED;
        snprintf(res->message, sizeof res->message, "client: out of memory");
        res->text = calloc(1, 1);
        return res->status;
    }
    m.n_messages = (size_t)(rq->n_messages > 0 ? rq->n_messages : 0);
    m.messages = mp;
    if (rq->temperature >= 0) {
        sp._temperature_case = EMSERVE__V1__SAMPLING_PARAMS___TEMPERATURE_TEMPERATURE;
        sp.temperature = rq->temperature;
    }
    if (rq->top_k >= 0) {
        sp._top_k_case = EMSERVE__V1__SAMPLING_PARAMS___TOP_K_TOP_K;
        sp.top_k = rq->top_k;
    }
    if (rq->has_seed) {
        sp._seed_case = EMSERVE__V1__SAMPLING_PARAMS___SEED_SEED;
        sp.seed = rq->seed;
    }
    m.sampling = &sp;
    if (rq->max_tokens >= 0) {
        stp._max_tokens_case = EMSERVE__V1__STOPPING_PARAMS___MAX_TOKENS_MAX_TOKENS;
        stp.max_tokens = rq->max_tokens;
    }
    if (rq->ignore_eos) {
        stp._ignore_eos_case = EMSERVE__V1__STOPPING_PARAMS___IGNORE_EOS_IGNORE_EOS;
        stp.ignore_eos = 1;
    }
    m.stopping = &stp;
    if (rq->kv_method) {
        kv.method = (char *)rq->kv_method;
    }
    if (rq->kv_budget > 0) {
        kv._budget_case = EMSERVE__V1__KV_CONFIG___BUDGET_BUDGET;
        kv.budget = rq->kv_budget;
    }
    for (int i = 0; i < rq->n_kv && i < 32; i++) {
        emserve__v1__kv_param__init(&params[i]);
        params[i].key = (char *)rq->kv_keys[i];
        params[i].value = (char *)rq->kv_vals[i];
        pp[i] = &params[i];
    }
    kv.n_params = (size_t)(rq->n_kv < 32 ? rq->n_kv : 32);
    kv.params = pp;
    m.kv = &kv;
    grpc_byte_buffer *bb = rpc_pack(&m.base);
    free(msgs);
    free(mp);
    grpc_status_code st = run_stream(c, bb, rq->timeout_ms, rq, res);
    grpc_byte_buffer_destroy(bb);
    return st;
}

grpc_status_code coord_client_generate_raw(coord_client *c, const void *bytes, size_t len,
                                           char *msg, size_t msglen)
{
    coord_client_result res;
    memset(&res, 0, sizeof res);
    grpc_slice s = grpc_slice_from_copied_buffer(bytes, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    grpc_status_code st = run_stream(c, bb, 10000, NULL, &res);
    grpc_byte_buffer_destroy(bb);
    if (msg) {
        snprintf(msg, msglen, "%s", res.message);
    }
    coord_client_result_free(&res);
    return st;
}

grpc_status_code coord_client_tokenize(coord_client *c, const coord_client_tokenize_req *rq,
                                       coord_client_tokens *out)
{
    Emserve__V1__TokenizeRequest m = EMSERVE__V1__TOKENIZE_REQUEST__INIT;
    Emserve__V1__ChatMessage *msgs = NULL, **mp = NULL;
    memset(out, 0, sizeof *out);
    if (rq->text) {
        m.text = (char *)rq->text;
    }
    if (rq->n_messages > 0 && !chat_messages(rq->messages, rq->n_messages, &msgs, &mp)) {
        out->status = GRPC_STATUS_RESOURCE_EXHAUSTED;
        snprintf(out->message, sizeof out->message, "client: out of memory");
        return out->status;
    }
    m.n_messages = (size_t)(rq->n_messages > 0 ? rq->n_messages : 0);
    m.messages = mp;
    if (rq->add_special >= 0) {
        m._add_special_case = EMSERVE__V1__TOKENIZE_REQUEST___ADD_SPECIAL_ADD_SPECIAL;
        m.add_special = rq->add_special != 0;
    }
    if (rq->parse_special >= 0) {
        m._parse_special_case = EMSERVE__V1__TOKENIZE_REQUEST___PARSE_SPECIAL_PARSE_SPECIAL;
        m.parse_special = rq->parse_special != 0;
    }
    ProtobufCMessage *resp = NULL;
    out->status = rpc_unary(c->ch, "/emserve.v1.Emserve/Tokenize", &m.base,
                            &emserve__v1__tokenize_response__descriptor, &resp, 30000, 0,
                            out->message, sizeof out->message);
    free(msgs);
    free(mp);
    if (out->status == GRPC_STATUS_OK && resp == NULL) {
        out->status = GRPC_STATUS_INTERNAL;
        snprintf(out->message, sizeof out->message, "client: no reply message");
    }
    if (out->status != GRPC_STATUS_OK) {
        return out->status;
    }
    const Emserve__V1__TokenizeResponse *r = (const Emserve__V1__TokenizeResponse *)resp;
    out->ids = malloc(sizeof(int32_t) * (r->n_ids + 1));
    out->prompt = strdup(r->prompt);
    if (out->ids == NULL || out->prompt == NULL) {
        coord_client_tokens_free(out);
        out->status = GRPC_STATUS_RESOURCE_EXHAUSTED;
        snprintf(out->message, sizeof out->message, "client: out of memory");
    } else {
        memcpy(out->ids, r->ids, sizeof(int32_t) * r->n_ids);
        out->n_ids = (int)r->n_ids;
    }
    protobuf_c_message_free_unpacked(resp, NULL);
    return out->status;
}

void coord_client_tokens_free(coord_client_tokens *t)
{
    free(t->ids);
    free(t->prompt);
    t->ids = NULL;
    t->prompt = NULL;
    t->n_ids = 0;
}

em_status coord_client_abort(coord_client *c, const char *request_id, int *found)
{
    Emserve__V1__AbortRequest rq = EMSERVE__V1__ABORT_REQUEST__INIT;
    rq.request_id = (char *)request_id;
    ProtobufCMessage *resp = NULL;
    grpc_status_code st =
        rpc_unary(c->ch, "/emserve.v1.Emserve/Abort", &rq.base,
                  &emserve__v1__abort_response__descriptor, &resp, 5000, 0, NULL, 0);
    *found = 0;
    if (st != GRPC_STATUS_OK) {
        return rpc_status_to_em(st);
    }
    *found = ((Emserve__V1__AbortResponse *)resp)->found;
    protobuf_c_message_free_unpacked(resp, NULL);
    return EM_OK;
}

em_status coord_client_health(coord_client *c, long timeout_ms, int *serving)
{
    Grpc__Health__V1__HealthCheckRequest rq = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    grpc_status_code st = rpc_unary(c->ch, "/grpc.health.v1.Health/Check", &rq.base,
                                    &grpc__health__v1__health_check_response__descriptor, &resp,
                                    timeout_ms, 0, NULL, 0);
    *serving = 0;
    if (st != GRPC_STATUS_OK) {
        return rpc_status_to_em(st);
    }
    *serving = ((Grpc__Health__V1__HealthCheckResponse *)resp)->status ==
               GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    protobuf_c_message_free_unpacked(resp, NULL);
    return EM_OK;
}

em_status coord_client_wait_serving(coord_client *c, long timeout_ms)
{
    double t_end = em_now_s() + timeout_ms / 1000.0;
    while (em_now_s() < t_end) {
        int serving;
        if (coord_client_health(c, 1000, &serving) == EM_OK && serving) {
            return EM_OK;
        }
        usleep(50000);
    }
    return EM_ETIMEDOUT;
}

void coord_client_set_admin_secret(coord_client *c, const char *secret)
{
    snprintf(c->secret, sizeof c->secret, "%s", secret ? secret : "");
}

em_status coord_client_server_info(coord_client *c, coord_client_info *out)
{
    Emserve__V1__GetServerInfoRequest rq = EMSERVE__V1__GET_SERVER_INFO_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    memset(out, 0, sizeof *out);
    grpc_status_code st =
        rpc_unary_auth(c->ch, "/emserve.v1.Emserve/GetServerInfo", &rq.base,
                       &emserve__v1__server_info__descriptor, &resp, 5000, 0, c->secret, NULL, 0);
    if (st != GRPC_STATUS_OK) {
        return rpc_status_to_em(st);
    }
    const Emserve__V1__ServerInfo *si = (const Emserve__V1__ServerInfo *)resp;
    out->serving = si->serving;
    out->worker_count = si->worker_count;
    out->heads_per_worker = si->heads_per_worker;
    out->running = si->running_requests;
    out->queued = si->queued_requests;
    out->generation = si->group_generation;
    out->requests_total = si->requests_total;
    for (size_t i = 0; i < si->n_workers && i < 64; i++) {
        out->pid[i] = si->workers[i]->pid;
        out->weight_bytes[i] = si->workers[i]->weight_bytes;
        out->kv_head0[i] = si->workers[i]->n_kv_heads ? si->workers[i]->kv_heads[0] : -1;
        out->n_kv_heads[i] = (int)si->workers[i]->n_kv_heads;
        out->kv_budget[i] = si->workers[i]->kv_memory_budget_bytes;
        out->kv_held[i] = si->workers[i]->kv_bytes_held;
        out->kv_full[i] = si->workers[i]->kv_bytes_full;
    }
    protobuf_c_message_free_unpacked(resp, NULL);
    return EM_OK;
}

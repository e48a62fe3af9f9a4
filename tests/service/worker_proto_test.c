/* The internal coordinator -> worker protocol against one hand-started worker: Hello first (and
 * version checks), FormGroup (placement, a world that does not divide the KV heads), Step
 * (prefill + greedy decode reproduce the golden ids from the returned logits), and bad steps
 * (unknown slot, token out of range, wrong generation, bad KV parameter, inconsistent lengths,
 * a message of another type) that are refused without killing the worker.
 * Issue 12 attacks, re-expressed: calls without the cluster secret or with a wrong one
 * (forged Hello / FormGroup / Step{drop}) are UNAUTHENTICATED and change nothing; a step
 * larger than max_batch_tokens (the 20,000-token Step), tokens injected at positions a slot
 * already holds or past its end (the 12,288-entries-per-head cache), a drop outside the slot
 * table, FormGroup sizes out of bounds, a KV parameter that is not UTF-8, and a message over
 * the 4 MiB cap are refused; the running sequence is unaffected (its ids stay golden). A
 * FormGroup must carry a group token and, once formed, a Step with the secret but without that
 * token (what another worker could send) is PERMISSION_DENIED. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

#include "proto/emserve/internal/v1/worker.pb-c.h"
#include "proto/worker_proto.h"
#include "rpc/rpc_util.h"
#include "tests/service/svc_harness.h"
#include "tests/testutil/testutil.h"

static grpc_channel *g_ch;
static char g_msg[512];
static const char *g_secret; /* what the calls present (the cluster's, none, a wrong one) */
static const char *g_token = "test-group-token-0123456789"; /* the group token presented */

static grpc_status_code call(const char *method, const ProtobufCMessage *rq,
                             const ProtobufCMessageDescriptor *d, ProtobufCMessage **resp)
{
    ProtobufCMessage *dummy = NULL;
    grpc_status_code st = rpc_unary_token(g_ch, method, rq, d, resp ? resp : &dummy, 30000,
                                          g_secret, g_token, g_msg, sizeof g_msg);
    if (!resp && dummy) {
        protobuf_c_message_free_unpacked(dummy, NULL);
    }
    return st;
}

static grpc_status_code hello(int version)
{
    Emserve__Internal__V1__HelloRequest rq = EMSERVE__INTERNAL__V1__HELLO_REQUEST__INIT;
    rq.protocol_version = version;
    return call(WORKER_METHOD_HELLO, &rq.base, &emserve__internal__v1__hello_response__descriptor,
                NULL);
}

static grpc_status_code form_sized(int rank, int world, int64_t gen, int max_slots)
{
    Emserve__Internal__V1__FormGroupRequest rq = EMSERVE__INTERNAL__V1__FORM_GROUP_REQUEST__INIT;
    rq.generation = gen;
    rq.rank = rank;
    rq.world = world;
    rq.store_addr = "127.0.0.1:1";
    rq.prefix = "t";
    rq.gloo_host = "127.0.0.1";
    rq.timeout_ms = 2000;
    rq.max_batch_tokens = 64;
    rq.max_slots = max_slots;
    ProtobufCMessage *r = NULL;
    grpc_status_code st = call(WORKER_METHOD_FORM_GROUP, &rq.base,
                               &emserve__internal__v1__form_group_response__descriptor, &r);
    if (st == GRPC_STATUS_OK) {
        Emserve__Internal__V1__FormGroupResponse *f = (Emserve__Internal__V1__FormGroupResponse *)r;
        CHECK(f->unit0 == 0 && f->n_units_local == 4 && f->weight_bytes > 0,
              "FormGroup placement: units %d + %d, %lld weight bytes", (int)f->unit0,
              (int)f->n_units_local, (long long)f->weight_bytes);
        CHECK(f->n_vocab == 512 && f->n_layer == 5 && f->n_kv_head == 4 && f->dim == 64,
              "FormGroup model shape: vocab %d layers %d kv heads %d dim %d", (int)f->n_vocab,
              (int)f->n_layer, (int)f->n_kv_head, (int)f->dim);
        protobuf_c_message_free_unpacked(r, NULL);
    }
    return st;
}

static grpc_status_code form(int rank, int world, int64_t gen)
{
    return form_sized(rank, world, gen, 4);
}

typedef struct step_args {
    int64_t gen;
    int open_slot; /* -1 none */
    const char *kv_key, *kv_val;
    int drop_slot; /* -1 none */
    const int32_t *tokens, *pos, *seq;
    int n, n_pos;
    int phase; /* policy phase for seq[0], 0 none */
} step_args;

/* Runs a step; on success writes the argmax of the last logits row to *next. */
static grpc_status_code step(const step_args *a, int32_t *next)
{
    Emserve__Internal__V1__StepRequest rq = EMSERVE__INTERNAL__V1__STEP_REQUEST__INIT;
    Emserve__Internal__V1__SeqOpen op = EMSERVE__INTERNAL__V1__SEQ_OPEN__INIT, *opp[1] = {&op};
    Emserve__Internal__V1__KvParam kv = EMSERVE__INTERNAL__V1__KV_PARAM__INIT, *kvp[1] = {&kv};
    Emserve__Internal__V1__SeqPolicy pol = EMSERVE__INTERNAL__V1__SEQ_POLICY__INIT,
                                     *polp[1] = {&pol};
    static uint8_t want[4096];
    memset(want, 0, sizeof want);
    int32_t drop[1] = {a->drop_slot};
    rq.generation = a->gen;
    if (a->open_slot >= 0) {
        op.slot = a->open_slot;
        if (a->kv_key) {
            kv.key = (char *)a->kv_key;
            kv.value = (char *)a->kv_val;
            op.n_kv = 1;
            op.kv = kvp;
        }
        rq.n_open = 1;
        rq.open = opp;
    }
    if (a->drop_slot >= 0) {
        rq.n_drop = 1;
        rq.drop = drop;
    }
    rq.n_tokens = (size_t)a->n;
    rq.tokens = (int32_t *)a->tokens;
    rq.n_pos = (size_t)a->n_pos;
    rq.pos = (int32_t *)a->pos;
    rq.n_seq = (size_t)a->n;
    rq.seq = (int32_t *)a->seq;
    if (a->n > 0) {
        want[a->n - 1] = 1;
        rq.want_logits.len = (size_t)a->n;
        rq.want_logits.data = want;
    }
    if (a->phase) {
        pol.slot = a->seq[0];
        pol.phase = a->phase;
        rq.n_policy = 1;
        rq.policy = polp;
    }
    rq.return_logits = 1;
    ProtobufCMessage *r = NULL;
    grpc_status_code st =
        call(WORKER_METHOD_STEP, &rq.base, &emserve__internal__v1__step_response__descriptor, &r);
    if (st == GRPC_STATUS_OK) {
        Emserve__Internal__V1__StepResponse *sr = (Emserve__Internal__V1__StepResponse *)r;
        int rows_ok = sr->n_logits == 1 && sr->logits.len == 512 * sizeof(float);
        CHECK(a->n == 0 || rows_ok, "Step returned %d logits rows, %zu bytes", (int)sr->n_logits,
              sr->logits.len);
        if (a->n > 0 && rows_ok) {
            const float *l = (const float *)sr->logits.data;
            int best = 0;
            for (int i = 1; i < 512; i++) {
                best = l[i] > l[best] ? i : best;
            }
            *next = best;
            CHECK(sr->n_kv_slots == 1 && sr->kv_slots[0] == a->seq[0], "Step reported %zu KV slots",
                  sr->n_kv_slots);
        }
        protobuf_c_message_free_unpacked(r, NULL);
    }
    return st;
}

/* CHECK with the worker's last status message, and an "ok" line when it holds. */
#define EXPECT(cond, what)                                              \
    do {                                                                \
        int ok_ = (cond);                                               \
        CHECK(ok_, "%s (last message: %s)", what, g_msg);               \
        if (ok_) {                                                      \
            printf("ok   %s%s%s\n", what, g_msg[0] ? ": " : "", g_msg); \
        }                                                               \
        g_msg[0] = 0;                                                   \
    } while (0)

int main(void)
{
    grpc_init();
    svc w;
    REQUIRE(svc_start_worker(&w, "127.0.0.1:0") == EM_OK, "worker did not start");
    grpc_channel_credentials *cr = grpc_insecure_credentials_create();
    g_ch = grpc_channel_create(w.addr, cr, rpc_channel_args());
    grpc_channel_credentials_release(cr);
    /* Without the cluster secret nothing is answered, not even Hello. */
    g_secret = NULL;
    EXPECT(hello(WORKER_PROTO_VERSION) == GRPC_STATUS_UNAUTHENTICATED, "Hello without the secret");
    g_secret = "not-the-cluster-secret-0000";
    EXPECT(hello(WORKER_PROTO_VERSION) == GRPC_STATUS_UNAUTHENTICATED, "Hello with a wrong secret");
    g_secret = svc_secret();
    int32_t next = -1;
    const int32_t *p = tu_goldens[0].prompt_ids;
    int32_t pos[5] = {0, 1, 2, 3, 4}, seq[5] = {1, 1, 1, 1, 1}, seq9[5] = {9, 9, 9, 9, 9};
    int32_t bad_tok[5] = {1, 403, 4000, 261, 378};

    EXPECT(step(&(step_args){1, 1, NULL, NULL, -1, p, pos, seq, 5, 5, 0}, &next) ==
               GRPC_STATUS_FAILED_PRECONDITION,
           "Step before Hello is refused");
    EXPECT(hello(99) == GRPC_STATUS_FAILED_PRECONDITION, "Hello with protocol version 99");
    EXPECT(hello(WORKER_PROTO_VERSION) == GRPC_STATUS_OK, "Hello v1");
    EXPECT(form(0, 5, 1) == GRPC_STATUS_INVALID_ARGUMENT && strstr(g_msg, "KV heads"),
           "FormGroup with 5 workers for 4 KV heads");
    EXPECT(step(&(step_args){1, 1, NULL, NULL, -1, p, pos, seq, 5, 5, 0}, &next) ==
               GRPC_STATUS_UNAVAILABLE,
           "Step outside a group");
    EXPECT(form_sized(0, 1, 7, 1000000) == GRPC_STATUS_INVALID_ARGUMENT &&
               strstr(g_msg, "max_slots"),
           "FormGroup asking for a million slots");
    EXPECT(form(0, 1, 0) == GRPC_STATUS_INVALID_ARGUMENT, "FormGroup with generation 0");
    g_token = NULL;
    EXPECT(form(0, 1, 7) == GRPC_STATUS_INVALID_ARGUMENT && strstr(g_msg, "group token"),
           "FormGroup without a group token");
    g_token = "test-group-token-0123456789";
    EXPECT(form(0, 1, 7) == GRPC_STATUS_OK, "FormGroup 1 of 1, generation 7");
    /* The cluster secret alone (another worker has it) does not step this group. */
    g_token = NULL;
    EXPECT(step(&(step_args){7, 1, NULL, NULL, -1, p, pos, seq, 5, 5, 0}, &next) ==
                   GRPC_STATUS_PERMISSION_DENIED &&
               strstr(g_msg, "group"),
           "a Step with the secret but no group token");
    g_token = "another-group-token-0123456";
    EXPECT(step(&(step_args){7, 1, NULL, NULL, -1, p, pos, seq, 5, 5, 0}, &next) ==
                   GRPC_STATUS_PERMISSION_DENIED &&
               strstr(g_msg, "group"),
           "a Step with the secret but another group's token");
    g_token = "test-group-token-0123456789";
    EXPECT(step(&(step_args){6, 1, NULL, NULL, -1, p, pos, seq, 5, 5, 0}, &next) ==
               GRPC_STATUS_UNAVAILABLE,
           "Step with a stale generation");
    EXPECT(step(&(step_args){7, -1, NULL, NULL, -1, p, pos, seq9, 5, 5, 0}, &next) ==
               GRPC_STATUS_INVALID_ARGUMENT,
           "Step on a slot that is not open");
    EXPECT(step(&(step_args){7, 9, NULL, NULL, -1, p, pos, seq9, 5, 5, 0}, &next) ==
               GRPC_STATUS_INVALID_ARGUMENT,
           "open of slot 9 of 4");
    EXPECT(step(&(step_args){7, 1, NULL, NULL, -1, bad_tok, pos, seq, 5, 5, 0}, &next) ==
                   GRPC_STATUS_INVALID_ARGUMENT &&
               strstr(g_msg, "4000"),
           "token id out of range");
    EXPECT(step(&(step_args){7, 2, NULL, NULL, -1, p, pos, seq, 5, 4, 0}, &next) ==
               GRPC_STATUS_INVALID_ARGUMENT,
           "tokens/pos lengths differ");
    EXPECT(step(&(step_args){7, 2, "ems.tau", "x", -1, p, pos, seq, 5, 5, 0}, &next) ==
               GRPC_STATUS_INVALID_ARGUMENT,
           "bad KV parameter");
    {
        /* a HelloRequest{protocol_version: -1} parses as StepRequest{generation: -1} */
        ProtobufCMessage *r = NULL;
        Emserve__Internal__V1__HelloRequest hq = EMSERVE__INTERNAL__V1__HELLO_REQUEST__INIT;
        hq.protocol_version = -1;
        EXPECT(rpc_unary_token(g_ch, WORKER_METHOD_STEP, &hq.base,
                               &emserve__internal__v1__step_response__descriptor, &r, 5000,
                               g_secret, g_token, g_msg, sizeof g_msg) == GRPC_STATUS_UNAVAILABLE,
               "a Hello message sent as a Step (generation -1)");
    }
    EXPECT(step(&(step_args){7, 2, "method", "\xff\xfe", -1, p, pos, seq, 5, 5, 0}, &next) ==
                   GRPC_STATUS_INVALID_ARGUMENT &&
               strstr(g_msg, "UTF-8"),
           "KV parameter that is not UTF-8");
    {
        static int32_t big[65], bpos[65], bseq[65];
        for (int i = 0; i < 65; i++) {
            big[i] = p[i % 5];
            bpos[i] = i;
            bseq[i] = 1;
        }
        EXPECT(step(&(step_args){7, 1, NULL, NULL, -1, big, bpos, bseq, 65, 65, 0}, &next) ==
                       GRPC_STATUS_INVALID_ARGUMENT &&
                   strstr(g_msg, "max_batch_tokens"),
               "a step of 65 tokens with max_batch_tokens 64");
    }
    EXPECT(step(&(step_args){7, -1, NULL, NULL, 99, NULL, NULL, NULL, 0, 0, 0}, &next) ==
               GRPC_STATUS_INVALID_ARGUMENT,
           "drop of slot 99 of 4");
    /* Prefill the golden prompt in slot 1, then greedy decode: the golden ids. */
    int32_t got[8];
    int fail_ids = 0;
    EXPECT(step(&(step_args){7, 1, NULL, NULL, -1, p, pos, seq, 5, 5, WORKER_PHASE_PREFILL_END},
                &next) == GRPC_STATUS_OK,
           "prefill");
    /* Attacks on the running sequence in slot 1 (positions 0..4 fed): each is refused and the
     * decode below still gives the golden ids. */
    EXPECT(step(&(step_args){7, -1, NULL, NULL, -1, p, pos, seq, 5, 5, 0}, &next) ==
                   GRPC_STATUS_INVALID_ARGUMENT &&
               strstr(g_msg, "continues at 5"),
           "tokens injected again at positions 0..4 of a running slot");
    {
        int32_t far = 100, one = 1;
        EXPECT(step(&(step_args){7, -1, NULL, NULL, -1, p, &far, &one, 1, 1, 0}, &next) ==
                   GRPC_STATUS_INVALID_ARGUMENT,
               "a token at position 100 of a slot that continues at 5");
    }
    g_secret = NULL;
    EXPECT(step(&(step_args){7, -1, NULL, NULL, 1, NULL, NULL, NULL, 0, 0, 0}, &next) ==
               GRPC_STATUS_UNAUTHENTICATED,
           "a forged Step{drop slot 1} without the secret");
    EXPECT(form(0, 1, 8) == GRPC_STATUS_UNAUTHENTICATED, "a forged FormGroup without the secret");
    g_secret = svc_secret();
    {
        /* a message over the worker's 4 MiB cap is refused before it is read */
        static int32_t huge[1100000];
        Emserve__Internal__V1__StepRequest rq = EMSERVE__INTERNAL__V1__STEP_REQUEST__INIT;
        rq.generation = 7;
        rq.n_drop = sizeof huge / sizeof huge[0];
        rq.drop = huge;
        for (size_t i = 0; i < rq.n_drop; i++) {
            huge[i] = (1 << 28) + (int32_t)i; /* 5-byte varints: 5.5 MB */
        }
        EXPECT(call(WORKER_METHOD_STEP, &rq.base, &emserve__internal__v1__step_response__descriptor,
                    NULL) == GRPC_STATUS_RESOURCE_EXHAUSTED,
               "a 5.5 MB Step (over the 4 MiB cap)");
    }
    for (int i = 0; i < 8; i++) {
        got[i] = next;
        fail_ids += next != tu_goldens[0].ids[i];
        int32_t ps = 5 + i, sl = 1;
        if (step(&(step_args){7, -1, NULL, NULL, -1, &next, &ps, &sl, 1, 1, WORKER_PHASE_DECODE},
                 &next) != GRPC_STATUS_OK) {
            fail_ids++;
            break;
        }
    }
    EXPECT(fail_ids == 0, "greedy ids from the worker's logits = golden ids");
    printf("     ids: %d %d %d %d %d %d %d %d\n", got[0], got[1], got[2], got[3], got[4], got[5],
           got[6], got[7]);
    EXPECT(step(&(step_args){7, -1, NULL, NULL, 1, NULL, NULL, NULL, 0, 0, 0}, &next) ==
               GRPC_STATUS_OK,
           "drop slot 1 (an empty step)");
    EXPECT(step(&(step_args){7, -1, NULL, NULL, -1, p, pos, seq, 5, 5, 0}, &next) ==
               GRPC_STATUS_INVALID_ARGUMENT,
           "slot 1 is gone after the drop");
    EXPECT(svc_alive(&w), "the worker survived every bad call");
    grpc_channel_destroy(g_ch);
    int st = svc_stop(&w);
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "clean exit on SIGTERM");
    grpc_shutdown();
    TEST_END();
}

/* Malformed and invalid requests: malformed protobuf bytes and every out-of-range or unsupported
 * field (chat messages included: the test model has no chat template) give INVALID_ARGUMENT with
 * a message naming the field; a flood of bad requests from several threads never crashes the
 * coordinator or a worker, and a good request still gets the golden ids afterwards.
 * Issue 12 item 7, re-expressed: an empty text prompt (was: generated from BOS alone), invalid
 * UTF-8 in text, stop strings and request_id (a bad request_id was echoed back and broke the
 * client's decoding), and a NUL byte in text (was: cut silently) are INVALID_ARGUMENT naming
 * the field; a 5 MB request is RESOURCE_EXHAUSTED (the 4 MiB cap) without being read. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <grpc/grpc.h>

#include "coordinator/client.h"
#include "proto/c/emserve/v1/emserve.pb-c.h"
#include "rpc/rpc_util.h"
#include "tests/service/svc_harness.h"
#include "tests/testutil/testutil.h"

typedef struct bad_case {
    const char *name;
    const char *want; /* substring of the status message */
    int which;        /* mutation applied by mutate() */
} bad_case;

enum {
    B_NO_INPUT,
    B_EMPTY_IDS,
    B_BAD_ID,
    B_TEMP_NEG,
    B_TEMP_NAN,
    B_TOP_P_ZERO,
    B_TOP_P_BIG,
    B_TOP_K_NEG,
    B_MIN_P,
    B_REP_PEN,
    B_LOGPROBS,
    B_N2,
    B_MAX_TOK_0,
    B_MAX_TOK_BIG,
    B_STOP_ID,
    B_STOP_EMPTY,
    B_STOP_MANY,
    B_KV_METHOD,
    B_KV_BUDGET,
    B_KV_PARAM,
    B_KV_PARAM_VAL,
    B_KV_KEEP_LOW,
    B_ID_LONG,
    B_TEXT_LONG,
    B_MSG_NO_TEMPLATE,
    B_MSG_EMPTY,
    B_MSG_BAD_ROLE,
    B_MSG_EMPTY_ROLE,
    B_MSG_AND_TEXT,
    B_MSG_AND_TOKENS,
    B_MSG_MANY,
    B_GEN_PROMPT_NO_MSG
};

static const bad_case k_bad[] = {
    {"no input", "input", B_NO_INPUT},
    {"empty ids", "tokens.ids", B_EMPTY_IDS},
    {"id out of vocab", "tokens.ids[1]", B_BAD_ID},
    {"temperature < 0", "temperature", B_TEMP_NEG},
    {"temperature NaN", "temperature", B_TEMP_NAN},
    {"top_p 0", "top_p", B_TOP_P_ZERO},
    {"top_p 1.5", "top_p", B_TOP_P_BIG},
    {"top_k -3", "top_k", B_TOP_K_NEG},
    {"min_p 2", "min_p", B_MIN_P},
    {"repetition_penalty 0", "repetition_penalty", B_REP_PEN},
    {"logprobs 50", "logprobs", B_LOGPROBS},
    {"n 2", "sampling.n", B_N2},
    {"max_tokens 0", "max_tokens", B_MAX_TOK_0},
    {"max_tokens huge", "max_tokens", B_MAX_TOK_BIG},
    {"stop id 9999", "stop_token_ids", B_STOP_ID},
    {"empty stop string", "stop", B_STOP_EMPTY},
    {"17 stop strings", "stop", B_STOP_MANY},
    {"kv method bogus", "kv.method", B_KV_METHOD},
    {"kv budget 0", "kv.budget", B_KV_BUDGET},
    {"kv unknown param", "kv.", B_KV_PARAM},
    {"kv bad param value", "kv.ems.tau", B_KV_PARAM_VAL},
    {"kv prefill_keep below the budget", "prefill_keep", B_KV_KEEP_LOW},
    {"request_id too long", "request_id", B_ID_LONG},
    {"text longer than the context", "text", B_TEXT_LONG},
    /* the test model has no chat template */
    {"messages, no chat template", "model has no supported chat template", B_MSG_NO_TEMPLATE},
    {"empty messages list", "set text, tokens or messages", B_MSG_EMPTY},
    {"unknown role", "messages[1].role: unknown role 'tool'", B_MSG_BAD_ROLE},
    {"empty role", "messages[0].role", B_MSG_EMPTY_ROLE},
    {"messages and text", "set only one of text, tokens and messages", B_MSG_AND_TEXT},
    {"messages and tokens", "set only one of text, tokens and messages", B_MSG_AND_TOKENS},
    {"1025 messages", "at most 1024", B_MSG_MANY},
    {"add_generation_prompt with text", "add_generation_prompt", B_GEN_PROMPT_NO_MSG},
};
#define N_BAD (int)(sizeof k_bad / sizeof k_bad[0])

static char g_long_text[20000];

/* Builds a valid request, applies mutation `which`, packs it; caller frees. */
static uint8_t *build(int which, size_t *len)
{
    Emserve__V1__GenerateRequest m = EMSERVE__V1__GENERATE_REQUEST__INIT;
    Emserve__V1__TokenIds tids = EMSERVE__V1__TOKEN_IDS__INIT;
    Emserve__V1__SamplingParams sp = EMSERVE__V1__SAMPLING_PARAMS__INIT;
    Emserve__V1__StoppingParams st = EMSERVE__V1__STOPPING_PARAMS__INIT;
    Emserve__V1__KvConfig kv = EMSERVE__V1__KV_CONFIG__INIT;
    Emserve__V1__KvParam kp = EMSERVE__V1__KV_PARAM__INIT, *kpp[1] = {&kp};
    int32_t ids[3] = {1, 403, 407};
    char *stops[17];
    char id[200];
    Emserve__V1__ChatMessage msg[1025], *mp[1025]; /* not static: the flood builds in threads */
    for (int i = 0; i < 1025; i++) {
        emserve__v1__chat_message__init(&msg[i]);
        msg[i].role = i % 2 ? "assistant" : "user";
        msg[i].content = "hi";
        mp[i] = &msg[i];
    }
    for (int i = 0; i < 17; i++) {
        stops[i] = "x";
    }
    m.input_case = EMSERVE__V1__GENERATE_REQUEST__INPUT_TEXT;
    m.text = "Once upon a time";
    m.sampling = &sp;
    m.stopping = &st;
    m.kv = &kv;
    tids.ids = ids;
    tids.n_ids = 3;
    /* clang-format off */
    switch (which) {
    case B_NO_INPUT: m.input_case = EMSERVE__V1__GENERATE_REQUEST__INPUT__NOT_SET; break;
    case B_EMPTY_IDS: m.input_case = EMSERVE__V1__GENERATE_REQUEST__INPUT_TOKENS; m.tokens = &tids; tids.n_ids = 0; break;
    case B_BAD_ID: m.input_case = EMSERVE__V1__GENERATE_REQUEST__INPUT_TOKENS; m.tokens = &tids; ids[1] = 9999; break;
    case B_TEMP_NEG: sp._temperature_case = 1; sp.temperature = -1; break;
    case B_TEMP_NAN: sp._temperature_case = 1; sp.temperature = NAN; break;
    case B_TOP_P_ZERO: sp._top_p_case = 2; sp.top_p = 0; break;
    case B_TOP_P_BIG: sp._top_p_case = 2; sp.top_p = 1.5f; break;
    case B_TOP_K_NEG: sp._top_k_case = 3; sp.top_k = -3; break;
    case B_MIN_P: sp._min_p_case = 4; sp.min_p = 2; break;
    case B_REP_PEN: sp._repetition_penalty_case = 5; sp.repetition_penalty = 0; break;
    case B_LOGPROBS: sp._logprobs_case = 7; sp.logprobs = 50; break;
    case B_N2: sp._n_case = 8; sp.n = 2; break;
    case B_MAX_TOK_0: st._max_tokens_case = 1; st.max_tokens = 0; break;
    case B_MAX_TOK_BIG: st._max_tokens_case = 1; st.max_tokens = 1 << 30; break;
    case B_STOP_ID: st.n_stop_token_ids = 1; st.stop_token_ids = ids; ids[0] = 9999; break;
    case B_STOP_EMPTY: st.n_stop = 1; st.stop = stops; stops[0] = ""; break;
    case B_STOP_MANY: st.n_stop = 17; st.stop = stops; break;
    case B_KV_METHOD: kv.method = "bogus"; break;
    case B_KV_BUDGET: kv.method = "ems"; kv._budget_case = 2; kv.budget = 0; break;
    case B_KV_PARAM: kv.n_params = 1; kv.params = kpp; kp.key = "no.such.key"; kp.value = "1"; break;
    case B_KV_PARAM_VAL: kv.method = "ems"; kv._budget_case = 2; kv.budget = 16; kv.n_params = 1; kv.params = kpp; kp.key = "ems.tau"; kp.value = "banana"; break;
    case B_KV_KEEP_LOW: kv.method = "ems"; kv._budget_case = 2; kv.budget = 16; kv.n_params = 1; kv.params = kpp; kp.key = "prefill_keep"; kp.value = "8"; break;
    case B_ID_LONG: memset(id, 'a', 199); id[199] = 0; m.request_id = id; break;
    case B_TEXT_LONG: m.text = g_long_text; break;
    case B_MSG_NO_TEMPLATE: m.input_case = EMSERVE__V1__GENERATE_REQUEST__INPUT__NOT_SET; m.n_messages = 2; m.messages = mp; break;
    /* an empty repeated field is absent on the wire: the same as no input at all */
    case B_MSG_EMPTY: m.input_case = EMSERVE__V1__GENERATE_REQUEST__INPUT__NOT_SET; m.n_messages = 0; m.messages = mp; break;
    case B_MSG_BAD_ROLE: m.input_case = EMSERVE__V1__GENERATE_REQUEST__INPUT__NOT_SET; m.n_messages = 2; m.messages = mp; msg[1].role = "tool"; break;
    case B_MSG_EMPTY_ROLE: m.input_case = EMSERVE__V1__GENERATE_REQUEST__INPUT__NOT_SET; m.n_messages = 1; m.messages = mp; msg[0].role = ""; break;
    case B_MSG_AND_TEXT: m.n_messages = 1; m.messages = mp; break;
    case B_MSG_AND_TOKENS: m.input_case = EMSERVE__V1__GENERATE_REQUEST__INPUT_TOKENS; m.tokens = &tids; m.n_messages = 1; m.messages = mp; break;
    case B_MSG_MANY: m.input_case = EMSERVE__V1__GENERATE_REQUEST__INPUT__NOT_SET; m.n_messages = 1025; m.messages = mp; break;
    case B_GEN_PROMPT_NO_MSG: m._add_generation_prompt_case = 9; m.add_generation_prompt = 1; break;
    }
    /* clang-format on */
    *len = protobuf_c_message_get_packed_size(&m.base);
    uint8_t *buf = malloc(*len + 1);
    REQUIRE(buf != NULL, "out of memory");
    size_t packed = protobuf_c_message_pack(&m.base, buf);
    REQUIRE(packed == *len, "packed %zu bytes of %zu", packed, *len);
    return buf;
}

static void test_fields(coord_client *cl)
{
    for (int i = 0; i < N_BAD; i++) {
        size_t len;
        uint8_t *b = build(k_bad[i].which, &len);
        char msg[512] = "";
        grpc_status_code st = coord_client_generate_raw(cl, b, len, msg, sizeof msg);
        int ok = st == GRPC_STATUS_INVALID_ARGUMENT && strstr(msg, k_bad[i].want) != NULL;
        printf("%-30s -> %d %s\n", k_bad[i].name, st, msg);
        CHECK(ok, "%s: status %d '%s', want INVALID_ARGUMENT naming '%s'", k_bad[i].name, st, msg,
              k_bad[i].want);
        free(b);
    }
}

static const struct {
    const char *name;
    const char *bytes;
    size_t len;
} k_garbage[] = {
    {"random", "\xde\xad\xbe\xef\x01\x02\x03", 7},
    {"truncated varint", "\x08\xff\xff\xff", 4},
    {"length past end",
     "\x12\x7f"
     "abc",
     5},
    {"wrong wire type for text", "\x15\x00\x00\x80\x3f", 5},
    {"bad nested message", "\x22\x05\xff\xff\xff\xff\xff", 7},
    {"group start tag", "\x0b\x0c", 2},
};

/* Requests whose strings a C struct cannot even hold, written as wire bytes (string literals
 * split where a hex escape would swallow the next character). */
static const struct {
    const char *name, *want;
    const char *bytes;
    size_t len;
} k_strings[] = {
    {"empty text", "text: empty", "\x12\x00", 2},
    {"text not UTF-8", "text: not valid UTF-8",
     "\x12\x04"
     "ab\xff"
     "c",
     6},
    {"text overlong UTF-8", "text: not valid UTF-8",
     "\x12\x03"
     "a\xc0\xaf",
     5},
    {"text surrogate", "text: not valid UTF-8",
     "\x12\x04"
     "a\xed\xa0\x80",
     6},
    {"text with NUL", "text: contains a NUL byte",
     "\x12\x05"
     "ab\x00"
     "cd",
     7},
    {"request_id not UTF-8", "request_id: not valid UTF-8", "\x0a\x02\xc3\x28\x12\x02hi", 8},
    {"stop string not UTF-8", "stopping.stop: not valid UTF-8", "\x12\x02hi\x2a\x03\x1a\x01\x80",
     9},
    {"chat content not UTF-8", "messages.content: not valid UTF-8",
     "\x42\x09\x0a\x04user\x12\x01\xfe", 11},
};

static void test_strings(coord_client *cl)
{
    for (size_t i = 0; i < sizeof k_strings / sizeof k_strings[0]; i++) {
        char msg[256] = "";
        grpc_status_code st =
            coord_client_generate_raw(cl, k_strings[i].bytes, k_strings[i].len, msg, sizeof msg);
        printf("%-30s -> %d %s\n", k_strings[i].name, st, msg);
        CHECK(st == GRPC_STATUS_INVALID_ARGUMENT && strstr(msg, k_strings[i].want),
              "%s: status %d '%s', want INVALID_ARGUMENT '%s'", k_strings[i].name, st, msg,
              k_strings[i].want);
    }
    /* over the 4 MiB cap: refused before it is read */
    size_t big = 5u << 20;
    uint8_t *b = malloc(big);
    REQUIRE(b != NULL, "out of memory");
    memset(b, 'a', big);
    b[0] = 0x12; /* text, length 5 MiB - 4 as a 3-byte varint */
    size_t n = big - 4;
    b[1] = (uint8_t)(0x80 | (n & 0x7f));
    b[2] = (uint8_t)(0x80 | ((n >> 7) & 0x7f));
    b[3] = (uint8_t)(n >> 14);
    char msg[256] = "";
    grpc_status_code st = coord_client_generate_raw(cl, b, big, msg, sizeof msg);
    printf("%-30s -> %d %s\n", "5 MiB request", st, msg);
    CHECK(st == GRPC_STATUS_RESOURCE_EXHAUSTED, "5 MiB request: status %d '%s'", st, msg);
    free(b);
}

static void test_garbage(coord_client *cl)
{
    for (size_t i = 0; i < sizeof k_garbage / sizeof k_garbage[0]; i++) {
        char msg[256] = "";
        grpc_status_code st =
            coord_client_generate_raw(cl, k_garbage[i].bytes, k_garbage[i].len, msg, sizeof msg);
        printf("garbage %-24s -> %d %s\n", k_garbage[i].name, st, msg);
        CHECK(st == GRPC_STATUS_INVALID_ARGUMENT, "garbage %s: status %d, want INVALID_ARGUMENT",
              k_garbage[i].name, st);
    }
}

typedef struct flood_arg {
    coord_client *cl;
    int seed, n, bad_status;
} flood_arg;

static void *flood(void *p)
{
    flood_arg *a = p;
    unsigned s = (unsigned)a->seed;
    for (int i = 0; i < a->n; i++) {
        uint8_t buf[64];
        size_t len;
        uint8_t *b = NULL;
        if (i % 2 == 0) {
            len = 1 + rand_r(&s) % sizeof buf;
            for (size_t k = 0; k < len; k++) {
                buf[k] = (uint8_t)rand_r(&s);
            }
        } else {
            b = build(k_bad[rand_r(&s) % N_BAD].which, &len);
        }
        grpc_status_code st = coord_client_generate_raw(a->cl, b ? b : buf, len, NULL, 0);
        /* random bytes can happen to form a valid request: OK is fine then */
        if (st != GRPC_STATUS_INVALID_ARGUMENT && st != GRPC_STATUS_OK) {
            a->bad_status++;
        }
        free(b);
    }
    return NULL;
}

int main(void)
{
    for (size_t i = 0; i + 1 < sizeof g_long_text; i++) {
        g_long_text[i] = "ab c"[i % 4];
    }
    grpc_init();
    svc s;
    REQUIRE(svc_start(&s, 2, NULL) == EM_OK, "service did not start");
    coord_client *cl = coord_client_create(s.addr);
    test_fields(cl);
    test_strings(cl);
    test_garbage(cl);

    /* Unknown method, empty abort id. */
    ProtobufCMessage *resp = NULL;
    Emserve__V1__AbortRequest ab = EMSERVE__V1__ABORT_REQUEST__INIT;
    grpc_status_code st =
        rpc_unary(coord_client_channel(cl), "/emserve.v1.Emserve/Nope", &ab.base,
                  &emserve__v1__abort_response__descriptor, &resp, 5000, 0, NULL, 0);
    CHECK(st == GRPC_STATUS_UNIMPLEMENTED, "unknown method: status %d", st);
    st = rpc_unary(coord_client_channel(cl), "/emserve.v1.Emserve/Abort", &ab.base,
                   &emserve__v1__abort_response__descriptor, &resp, 5000, 0, NULL, 0);
    CHECK(st == GRPC_STATUS_INVALID_ARGUMENT, "Abort without an id: status %d", st);

    /* Flood: 4 threads x 100 bad requests. */
    pthread_t th[4];
    flood_arg fa[4];
    for (int i = 0; i < 4; i++) {
        fa[i] = (flood_arg){cl, 1000 + i, 100, 0};
        REQUIRE(pthread_create(&th[i], NULL, flood, &fa[i]) == 0, "thread %d", i);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL); /* each call has a deadline */
        CHECK(fa[i].bad_status == 0, "flood thread %d: %d unexpected statuses", i,
              fa[i].bad_status);
    }
    /* Still serving, still right. */
    REQUIRE(svc_alive(&s), "the service died in the flood");
    CHECK(svc_golden_ok(cl, 60, "after the flood"), "golden ids after the flood");
    coord_client_info info;
    REQUIRE(coord_client_server_info(cl, &info) == EM_OK, "GetServerInfo");
    /* no worker was lost or re-formed */
    CHECK(info.serving && info.generation == 1, "serving %d generation %lld after the flood",
          info.serving, (long long)info.generation);
    coord_client_free(cl);
    int code = svc_stop(&s);
    CHECK(WIFEXITED(code) && WEXITSTATUS(code) == 0, "emserve exit status %d", code);
    grpc_shutdown();
    TEST_END();
}

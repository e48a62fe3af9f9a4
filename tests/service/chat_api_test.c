/* The chat and tokenization API on the test model (stories260K, which has no chat template):
 * Tokenize of text gives the ids of the tokenizer called directly (and of the goldens), with and
 * without BOS; chat messages are refused with a clear INVALID_ARGUMENT in Generate and Tokenize;
 * every bad Tokenize request is INVALID_ARGUMENT naming the field; GetModelInfo reports no chat
 * template; Generate's prompt is Tokenize's; and the server still answers the golden ids.
 * Then the same model with tokenizer.chat_template = "chatml" added to a copy of its GGUF: the
 * chat path end to end (rendered prompt, its ids, a greedy generation equal to one from those
 * ids given as tokens). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <grpc/grpc.h>

#include "coordinator/client.h"
#include "model/gguf.h"
#include "model/gguf_write.h"
#include "model/tokenizer.h"
#include "proto/c/emserve/v1/emserve.pb-c.h"
#include "rpc/rpc_util.h"
#include "tests/service/svc_harness.h"
#include "tests/testutil/testutil.h"

static char g_long_text[(1 << 20) + 2];

/* ---- Tokenize of text = the tokenizer ----------------------------------------------------- */

static const struct {
    const char *text;
    int add_special, parse_special; /* -1: unset */
} k_texts[] = {
    {"Once upon a time", -1, -1},
    {"Once upon a time", 0, -1},
    {"Once upon a time", 1, 0},
    {"", -1, -1},
    {"Lily and Ben went to the park. They saw a", -1, -1},
    {"  two  spaces, tabs\tand\nnewlines ", -1, -1},
    {"h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80", -1, -1}, /* UTF-8 outside the vocabulary */
    {"<s> and <|im_start|> as text", -1, -1},
    {"<s> and <|im_start|> with specials parsed", -1, 1},
};

static void test_tokenize_text(coord_client *cl, const tokenizer *tok)
{
    for (size_t i = 0; i < sizeof k_texts / sizeof k_texts[0]; i++) {
        const char *text = k_texts[i].text;
        unsigned flags =
            (k_texts[i].add_special != 0 && tok_add_bos_default(tok) ? TOK_ADD_BOS : 0) |
            (k_texts[i].parse_special == 1 ? TOK_PARSE_SPECIAL : 0);
        int32_t want[256];
        int n_want = 0;
        CHECK(tok_encode_ex(tok, text, strlen(text), flags, want, 256, &n_want) == EM_OK,
              "direct tokenization of case %zu", i);
        coord_client_tokenize_req rq = {text, NULL, 0, k_texts[i].add_special,
                                        k_texts[i].parse_special};
        coord_client_tokens got;
        grpc_status_code st = coord_client_tokenize(cl, &rq, &got);
        int same = st == GRPC_STATUS_OK && got.n_ids == n_want &&
                   memcmp(got.ids, want, sizeof(int32_t) * (size_t)n_want) == 0;
        CHECK(same, "Tokenize case %zu ('%s'): status %d (%s), %d ids, want %d", i, text, st,
              got.message, got.n_ids, n_want);
        CHECK(st != GRPC_STATUS_OK || got.prompt[0] == 0, "case %zu: a prompt for text", i);
        printf("tokenize %-45.45s -> %d ids%s\n", text, got.n_ids, same ? "" : "   <-- FAIL");
        coord_client_tokens_free(&got);
    }
    /* proto3 strings are UTF-8: text that is not is refused, naming the field (issue 12) */
    coord_client_tokenize_req bad = {"\xff\xfe invalid UTF-8", NULL, 0, 0, -1};
    coord_client_tokens got;
    grpc_status_code st = coord_client_tokenize(cl, &bad, &got);
    CHECK(st == GRPC_STATUS_INVALID_ARGUMENT && strstr(got.message, "text: not valid UTF-8"),
          "Tokenize of invalid UTF-8: status %d (%s)", st, got.message);
    coord_client_tokens_free(&got);
    /* and the goldens' prompt ids (with BOS) */
    for (int g = 0; g < TU_N_GOLDENS; g++) {
        coord_client_tokenize_req rq = {tu_goldens[g].prompt, NULL, 0, -1, -1};
        coord_client_tokens got;
        coord_client_tokenize(cl, &rq, &got);
        CHECK(got.status == GRPC_STATUS_OK && got.n_ids == tu_goldens[g].n_prompt &&
                  memcmp(got.ids, tu_goldens[g].prompt_ids,
                         sizeof(int32_t) * (size_t)tu_goldens[g].n_prompt) == 0,
              "golden %d prompt ids", g);
        coord_client_tokens_free(&got);
    }
}

/* ---- bad Tokenize requests --------------------------------------------------------------------
 */

enum {
    T_MSG_NO_TEMPLATE,
    T_TEXT_AND_MSG,
    T_ADD_SPECIAL_MSG,
    T_PARSE_SPECIAL_MSG,
    T_GEN_TEXT,
    T_BAD_ROLE,
    T_EMPTY_ROLE,
    T_MANY_MSGS,
    T_TEXT_LONG,
    T_MALFORMED
};

static const struct {
    const char *name, *want;
    int which;
} k_bad[] = {
    {"messages, no chat template", "messages: model has no supported chat template",
     T_MSG_NO_TEMPLATE},
    {"text and messages", "text and messages", T_TEXT_AND_MSG},
    {"add_special with messages", "add_special: applies to text only", T_ADD_SPECIAL_MSG},
    {"parse_special with messages", "parse_special: applies to text only", T_PARSE_SPECIAL_MSG},
    {"add_generation_prompt with text", "add_generation_prompt: applies to messages only",
     T_GEN_TEXT},
    {"unknown role", "messages[0].role: unknown role 'robot'", T_BAD_ROLE},
    {"empty role", "messages[1].role: empty", T_EMPTY_ROLE},
    {"1025 messages", "messages: 1025 messages, at most 1024", T_MANY_MSGS},
    {"text over 1 MiB", "text: longer than", T_TEXT_LONG},
    {"malformed message", "malformed", T_MALFORMED},
};

static grpc_status_code bad_tokenize(coord_client *cl, int which, char *msg, size_t msglen)
{
    Emserve__V1__TokenizeRequest m = EMSERVE__V1__TOKENIZE_REQUEST__INIT;
    Emserve__V1__GenerateRequest wrong = EMSERVE__V1__GENERATE_REQUEST__INIT;
    Emserve__V1__ChatMessage cm[1025], *mp[1025];
    for (int i = 0; i < 1025; i++) {
        emserve__v1__chat_message__init(&cm[i]);
        cm[i].role = "user";
        cm[i].content = "hello";
        mp[i] = &cm[i];
    }
    m.messages = mp;
    m.n_messages = 2;
    const ProtobufCMessage *send = &m.base;
    /* clang-format off */
    switch (which) {
    case T_MSG_NO_TEMPLATE: break;
    case T_TEXT_AND_MSG: m.text = "hi"; break;
    case T_ADD_SPECIAL_MSG: m._add_special_case = 3; m.add_special = 1; break;
    case T_PARSE_SPECIAL_MSG: m._parse_special_case = 4; m.parse_special = 0; break;
    case T_GEN_TEXT: m.n_messages = 0; m.text = "hi"; m._add_generation_prompt_case = 5; m.add_generation_prompt = 1; break;
    case T_BAD_ROLE: cm[0].role = "robot"; break;
    case T_EMPTY_ROLE: cm[1].role = ""; break;
    case T_MANY_MSGS: m.n_messages = 1025; break;
    case T_TEXT_LONG: m.n_messages = 0; m.text = g_long_text; break;
    /* a GenerateRequest's field 2 is its text, a TokenizeRequest's is a message: these bytes
     * are a field whose length runs past the end */
    case T_MALFORMED: wrong.input_case = EMSERVE__V1__GENERATE_REQUEST__INPUT_TEXT; wrong.text = "\x0a\x7f"; send = &wrong.base; break;
    }
    /* clang-format on */
    ProtobufCMessage *resp = NULL;
    grpc_status_code st =
        rpc_unary(coord_client_channel(cl), "/emserve.v1.Emserve/Tokenize", send,
                  &emserve__v1__tokenize_response__descriptor, &resp, 10000, 0, msg, msglen);
    if (resp) {
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    return st;
}

static void test_tokenize_errors(coord_client *cl)
{
    for (size_t i = 0; i < sizeof k_bad / sizeof k_bad[0]; i++) {
        char msg[512] = "";
        grpc_status_code st = bad_tokenize(cl, k_bad[i].which, msg, sizeof msg);
        int ok = st == GRPC_STATUS_INVALID_ARGUMENT && strstr(msg, k_bad[i].want) != NULL;
        printf("tokenize %-32s -> %d %s%s\n", k_bad[i].name, st, msg, ok ? "" : "   <-- FAIL");
        CHECK(ok, "%s: status %d '%s', want INVALID_ARGUMENT '%s'", k_bad[i].name, st, msg,
              k_bad[i].want);
    }
}

/* ---- Generate with messages, ModelInfo ----------------------------------------------------- */

static void test_generate(coord_client *cl)
{
    static const coord_chat_msg msgs[] = {{"system", "Be brief."}, {"user", "Hello"}};
    coord_client_req rq;
    coord_client_result res;
    memset(&rq, 0, sizeof rq);
    rq.messages = msgs;
    rq.n_messages = 2;
    rq.max_tokens = 8;
    rq.temperature = 0;
    rq.top_k = -1;
    rq.timeout_ms = 10000;
    coord_client_generate(cl, &rq, &res);
    CHECK(res.status == GRPC_STATUS_INVALID_ARGUMENT &&
              strstr(res.message, "model has no supported chat template") && res.n_ids == 0,
          "Generate with messages: status %d '%s'", res.status, res.message);
    coord_client_result_free(&res);

    /* Generate's prompt is what Tokenize returns */
    rq.messages = NULL;
    rq.n_messages = 0;
    rq.text = tu_goldens[1].prompt;
    coord_client_generate(cl, &rq, &res);
    CHECK(res.status == GRPC_STATUS_OK && res.prompt_tokens == tu_goldens[1].n_prompt,
          "Generate(text): status %d, %d prompt tokens", res.status, res.prompt_tokens);
    coord_client_result_free(&res);
}

static void expect_chat_template(coord_client *cl, const char *want)
{
    Emserve__V1__GetModelInfoRequest rq = EMSERVE__V1__GET_MODEL_INFO_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    grpc_status_code st =
        rpc_unary(coord_client_channel(cl), "/emserve.v1.Emserve/GetModelInfo", &rq.base,
                  &emserve__v1__model_info__descriptor, &resp, 5000, 0, NULL, 0);
    const Emserve__V1__ModelInfo *mi = (const Emserve__V1__ModelInfo *)resp;
    CHECK(st == GRPC_STATUS_OK && mi && strcmp(mi->chat_template, want) == 0 && mi->n_vocab == 512,
          "GetModelInfo: status %d, chat_template '%s', want '%s'", st, mi ? mi->chat_template : "",
          want);
    if (resp) {
        protobuf_c_message_free_unpacked(resp, NULL);
    }
}

/* ---- a copy of the model with a chat template ------------------------------------------------ */

/* Writes src's GGUF with one more key, tokenizer.chat_template = tmpl: the header with n_kv + 1,
 * the old keys, the new one, the old tensor infos, padding to the alignment, the old data
 * (tensor offsets are relative to the data section, so they stay valid). */
static em_status write_with_template(const gguf_file *f, const char *tmpl, const char *dst)
{
    if (f->n_tensors == 0) {
        return EM_EINVAL;
    }
    const uint8_t *base = f->map;
    const gguf_tensor_info *t0 = &f->tensors[0], *tl = &f->tensors[f->n_tensors - 1];
    size_t kv_end = (size_t)((const uint8_t *)t0->name.data - 8 - base);
    size_t ti_end =
        (size_t)((const uint8_t *)tl->name.data - base) + tl->name.len + 4 + 8 * tl->n_dims + 4 + 8;
    size_t data = (size_t)((const uint8_t *)t0->data - base) - t0->offset;
    gguf_buf b = {0};
    gguf_buf_put(&b, base, 16);
    gguf_buf_u64(&b, f->n_kv + 1);
    gguf_buf_put(&b, base + 24, kv_end - 24);
    gguf_buf_str(&b, "tokenizer.chat_template");
    gguf_buf_u32(&b, GGUF_TYPE_STRING);
    gguf_buf_str(&b, tmpl);
    gguf_buf_put(&b, base + kv_end, ti_end - kv_end);
    gguf_buf_pad(&b, f->alignment);
    gguf_buf_put(&b, base + data, f->size - data);
    FILE *fp = b.oom ? NULL : fopen(dst, "wb");
    int ok = fp && fwrite(b.p, 1, b.n, fp) == b.n;
    ok = fp && fclose(fp) == 0 && ok;
    gguf_buf_free(&b);
    return ok ? EM_OK : EM_EIO;
}

#define CHATML_PROMPT                                                                 \
    "<|im_start|>system\nYou tell stories.<|im_end|>\n<|im_start|>user\nOnce upon a " \
    "time<|im_end|>\n"

/* Tokenize of a system and a user message, with or without the generation prompt (-1: unset). */
static grpc_status_code tokenize_chat(coord_client *cl, int gen, char **prompt, int32_t **ids,
                                      int *n)
{
    Emserve__V1__TokenizeRequest m = EMSERVE__V1__TOKENIZE_REQUEST__INIT;
    Emserve__V1__ChatMessage cm[2], *mp[2] = {&cm[0], &cm[1]};
    emserve__v1__chat_message__init(&cm[0]);
    emserve__v1__chat_message__init(&cm[1]);
    cm[0].role = "system";
    cm[0].content = "You tell stories.";
    cm[1].role = "user";
    cm[1].content = "Once upon a time";
    m.n_messages = 2;
    m.messages = mp;
    if (gen >= 0) {
        m._add_generation_prompt_case = 5;
        m.add_generation_prompt = gen;
    }
    ProtobufCMessage *resp = NULL;
    grpc_status_code st =
        rpc_unary(coord_client_channel(cl), "/emserve.v1.Emserve/Tokenize", &m.base,
                  &emserve__v1__tokenize_response__descriptor, &resp, 10000, 0, NULL, 0);
    const Emserve__V1__TokenizeResponse *r = (const Emserve__V1__TokenizeResponse *)resp;
    *prompt = strdup(r ? r->prompt : "");
    *n = r ? (int)r->n_ids : 0;
    *ids = malloc(sizeof(int32_t) * (size_t)(*n + 1));
    if (r) {
        memcpy(*ids, r->ids, sizeof(int32_t) * r->n_ids);
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    return st;
}

static void test_chatml_model(const gguf_file *gf, const tokenizer *tok)
{
    char path[4096];
    tu_tmp_path(path, sizeof path, "stories260K_chatml.gguf");
    if (write_with_template(gf, "chatml", path) != EM_OK) {
        CHECK(0, "cannot write %s", path);
        return;
    }
    svc s;
    if (svc_start_model(&s, path, 1, NULL) != EM_OK) {
        CHECK(0, "cannot start the service on %s", path);
        return;
    }
    coord_client *cl = coord_client_create(s.addr);
    expect_chat_template(cl, "chatml");

    char *prompt = NULL;
    int32_t *ids = NULL, want[256];
    int n = 0, n_want = 0;
    CHECK(tokenize_chat(cl, 0, &prompt, &ids, &n) == GRPC_STATUS_OK &&
              strcmp(prompt, CHATML_PROMPT) == 0,
          "chat prompt without the generation prompt: '%s'", prompt);
    free(prompt);
    free(ids);
    grpc_status_code st = tokenize_chat(cl, -1, &prompt, &ids, &n);
    CHECK(st == GRPC_STATUS_OK && strcmp(prompt, CHATML_PROMPT "<|im_start|>assistant\n") == 0,
          "chat prompt: status %d '%s'", st, prompt);
    unsigned flags = (tok_add_bos_default(tok) ? TOK_ADD_BOS : 0) | TOK_PARSE_SPECIAL;
    CHECK(tok_encode_ex(tok, prompt, strlen(prompt), flags, want, 256, &n_want) == EM_OK &&
              n == n_want && memcmp(ids, want, sizeof(int32_t) * (size_t)n) == 0,
          "chat prompt ids: %d, the tokenizer gives %d", n, n_want);

    /* a chat generation = a generation from the same ids given as tokens */
    static const coord_chat_msg msgs[] = {{"system", "You tell stories."},
                                          {"user", "Once upon a time"}};
    coord_client_req rq;
    coord_client_result chat, toks;
    memset(&rq, 0, sizeof rq);
    rq.messages = msgs;
    rq.n_messages = 2;
    rq.max_tokens = 24;
    rq.temperature = 0;
    rq.top_k = -1;
    rq.timeout_ms = 30000;
    coord_client_generate(cl, &rq, &chat);
    rq.messages = NULL;
    rq.n_messages = 0;
    rq.ids = ids;
    rq.n_ids = n;
    coord_client_generate(cl, &rq, &toks);
    CHECK(chat.status == GRPC_STATUS_OK && chat.prompt_tokens == n && chat.n_output == 24,
          "chat generation: status %d (%s), %d prompt tokens, %d generated", chat.status,
          chat.message, chat.prompt_tokens, chat.n_output);
    CHECK(toks.status == GRPC_STATUS_OK && toks.n_output == chat.n_output &&
              memcmp(toks.output_ids, chat.output_ids, sizeof(int32_t) * (size_t)chat.n_output) ==
                  0,
          "chat generation differs from the one from its prompt ids");
    printf("chatml copy: %d prompt ids; assistant> %s\n", n, chat.text);
    coord_client_result_free(&chat);
    coord_client_result_free(&toks);
    free(prompt);
    free(ids);
    coord_client_free(cl);
    int code = svc_stop(&s);
    CHECK(WIFEXITED(code) && WEXITSTATUS(code) == 0, "exit status %d", code);
    unlink(path);
}

int main(void)
{
    memset(g_long_text, 'a', sizeof g_long_text - 1);
    const char *path = svc_model();
    gguf_file *gf = NULL;
    tokenizer *tok = NULL;
    char err[256] = "";
    if (gguf_open(path, &gf, err, sizeof err) != EM_OK ||
        tok_create(gf, &tok, err, sizeof err) != EM_OK) {
        fprintf(stderr, "FAIL: cannot load the tokenizer of %s: %s\n", path, err);
        return 1;
    }
    grpc_init();
    svc s;
    if (svc_start(&s, 1, NULL) != EM_OK) {
        fprintf(stderr, "FAIL: cannot start the service\n");
        return 1;
    }
    coord_client *cl = coord_client_create(s.addr);
    expect_chat_template(cl, "");
    test_tokenize_text(cl, tok);
    test_tokenize_errors(cl);
    test_generate(cl);
    CHECK(svc_alive(&s), "the coordinator is still running");
    CHECK(svc_golden_ok(cl, 20, "after the chat tests"), "golden ids");
    coord_client_free(cl);
    int code = svc_stop(&s);
    CHECK(WIFEXITED(code) && WEXITSTATUS(code) == 0, "exit status %d", code);
    test_chatml_model(gf, tok);
    grpc_shutdown();
    tok_free(tok);
    gguf_close(gf);
    TEST_END();
}

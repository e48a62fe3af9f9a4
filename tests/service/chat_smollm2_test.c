/* Chat end to end on SmolLM2-135M-Instruct (ChatML with a default system message): the service
 * reports the "chatml" template; Tokenize of one user message renders the template's text
 * exactly and gives the ids that llama.cpp's llama-tokenize gives for that text (the same as
 * chat_smollm2_ids.py, an independent GPT-2 BPE over the GGUF's merges); the same text as plain
 * Tokenize text gives those ids only with parse_special; a greedy chat generation completes.
 * Skipped loudly where the model file is absent, or while emserve cannot load it (the quantized
 * engine and the gpt2 tokenizer are merged separately). For reference, llama.cpp's
 * llama-completion answers this prompt greedily with "L'Étoile, la Marseillaise, ..." (the
 * 135M model does not know). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <grpc/grpc.h>

#include "coordinator/client.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "proto/c/emserve/v1/emserve.pb-c.h"
#include "rpc/rpc_util.h"
#include "tests/service/svc_harness.h"
#include "tests/testutil/testutil.h"

#define QUESTION "What is the capital of France?"

static const char k_prompt[] =
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n<|im_start|>user\n" QUESTION "<|im_end|>\n<|im_start|>assistant\n";

/* llama-tokenize -m SmolLM2-135M-Instruct.Q4_1.gguf -f <k_prompt> --ids */
static const int32_t k_ids[] = {1,    9690, 198,   2683, 359,  253,  5356, 5646,  11173, 3365,
                                3511, 308,  34519, 28,   7018, 411,  407,  19712, 8182,  2,
                                198,  1,    4093,  198,  1780, 314,  260,  3575,  282,   4649,
                                47,   2,    198,   1,    520,  9531, 198};
#define N_IDS (int)(sizeof k_ids / sizeof k_ids[0])

static const char *model_path(void)
{
    return model_find_default();
}

/* 1 when emserve can serve the model here; otherwise prints why this test is skipped. */
static int model_usable(const char *path)
{
    if (path == NULL) {
        printf("SKIPPED: SmolLM2 not installed (scripts/install-deps.sh, or set EMSERVE_MODEL)\n");
        return 0;
    }
    model *m = NULL;
    tokenizer *tok = NULL;
    char err[512] = "";
    em_status st = model_load(path, &m, err, sizeof err);
    if (st == EM_OK) {
        st = tok_create(m->gguf, &tok, err, sizeof err);
    }
    tok_free(tok);
    model_free(m);
    CHECK(st == EM_OK, "loading %s: %s", path, err);
    return st == EM_OK;
}

static void test_model_info(coord_client *cl)
{
    Emserve__V1__GetModelInfoRequest rq = EMSERVE__V1__GET_MODEL_INFO_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    grpc_status_code st =
        rpc_unary(coord_client_channel(cl), "/emserve.v1.Emserve/GetModelInfo", &rq.base,
                  &emserve__v1__model_info__descriptor, &resp, 5000, 0, NULL, 0);
    const Emserve__V1__ModelInfo *mi = (const Emserve__V1__ModelInfo *)resp;
    CHECK(st == GRPC_STATUS_OK && mi && strcmp(mi->chat_template, "chatml") == 0,
          "chat_template '%s'", mi ? mi->chat_template : "(no reply)");
    if (resp) {
        protobuf_c_message_free_unpacked(resp, NULL);
    }
}

static int ids_are(const coord_client_tokens *t, const int32_t *want, int n)
{
    return t->status == GRPC_STATUS_OK && t->n_ids == n &&
           memcmp(t->ids, want, sizeof(int32_t) * (size_t)n) == 0;
}

static void test_tokenize(coord_client *cl)
{
    static const coord_chat_msg msg[] = {{"user", QUESTION}};
    coord_client_tokenize_req rq = {NULL, msg, 1, -1, -1};
    coord_client_tokens t;
    coord_client_tokenize(cl, &rq, &t);
    CHECK(t.status == GRPC_STATUS_OK && strcmp(t.prompt, k_prompt) == 0,
          "rendered prompt: status %d (%s)\n  got  \"%s\"", t.status, t.message,
          t.prompt ? t.prompt : "");
    CHECK(ids_are(&t, k_ids, N_IDS), "chat prompt ids: %d, want %d", t.n_ids, N_IDS);
    coord_client_tokens_free(&t);

    coord_client_tokenize_req text = {k_prompt, NULL, 0, -1, 1}; /* specials parsed */
    coord_client_tokenize(cl, &text, &t);
    CHECK(ids_are(&t, k_ids, N_IDS), "text with parse_special: %d ids", t.n_ids);
    coord_client_tokens_free(&t);
    text.parse_special = -1; /* default: "<|im_start|>" is plain text */
    coord_client_tokenize(cl, &text, &t);
    CHECK(t.status == GRPC_STATUS_OK && t.n_ids > N_IDS, "text without parse_special: %d ids",
          t.n_ids);
    for (int i = 0; i < t.n_ids; i++) {
        CHECK(t.ids[i] != 1 && t.ids[i] != 2, "special id %d at %d from plain text", t.ids[i], i);
    }
    coord_client_tokens_free(&t);
}

static void test_generate(coord_client *cl)
{
    static const coord_chat_msg msg[] = {{"user", QUESTION}};
    coord_client_req rq;
    coord_client_result res;
    memset(&rq, 0, sizeof rq);
    rq.messages = msg;
    rq.n_messages = 1;
    rq.max_tokens = 48;
    rq.temperature = 0;
    rq.top_k = -1;
    rq.timeout_ms = 120000;
    coord_client_generate(cl, &rq, &res);
    printf("assistant> %s\n(%s, %d prompt + %d generated tokens)\n", res.text, res.finish_reason,
           res.prompt_tokens, res.completion_tokens);
    CHECK(res.status == GRPC_STATUS_OK, "chat generation: status %d %s", res.status, res.message);
    CHECK(res.prompt_tokens == N_IDS, "prompt tokens %d, want %d", res.prompt_tokens, N_IDS);
    CHECK(res.completion_tokens >= 1 && res.n_output == res.completion_tokens,
          "%d tokens generated", res.completion_tokens);
    CHECK(strcmp(res.finish_reason, "stop") == 0 || strcmp(res.finish_reason, "length") == 0,
          "finish_reason '%s'", res.finish_reason);
    coord_client_result_free(&res);
}

int main(void)
{
    const char *path = model_path();
    if (!model_usable(path)) {
        TEST_END();
    }
    grpc_init();
    svc s;
    if (svc_start_model(&s, path, 1, NULL) != EM_OK) {
        fprintf(stderr, "FAIL: cannot start the service with %s\n", path);
        return 1;
    }
    coord_client *cl = coord_client_create(s.addr);
    test_model_info(cl);
    test_tokenize(cl);
    test_generate(cl);
    coord_client_free(cl);
    int code = svc_stop(&s);
    CHECK(WIFEXITED(code) && WEXITSTATUS(code) == 0, "exit status %d", code);
    grpc_shutdown();
    TEST_END();
}

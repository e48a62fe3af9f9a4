/* Fuzz target: the public Generate request from wire bytes through validation, as the gRPC
 * server does it: the string check and unpacking of rpc_unpack_checked, then
 * coord_rpc_req_from_proto (req_spec.h's validator, chat template rendering and tokenization)
 * against SmolLM2-135M-Instruct (ChatML, byte-level BPE). A request that passes must be one the
 * scheduler can run: a prompt of 1 .. n_ctx - 1 ids inside the vocabulary, an id that is valid
 * UTF-8 of at most COORD_ID_MAX bytes. The same bytes then go through the Tokenize RPC
 * (coord_rpc_tokenize) as a TokenizeRequest: ids inside the vocabulary. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/slice.h>

#include "coordinator/rpc_convert.h"
#include "fuzz/fuzz.h"
#include "rpc/rpc_strings.h"

static model *g_model;
static tokenizer *g_tok;
static coord_chat_template g_chat = {COORD_CHAT_NONE, NULL};
static coord_prompt_ctx g_pc;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *path = fuzz_model_or_skip(model_find_default(), "SmolLM2 model");
    char err[512];
    grpc_init();
    if (model_load(path, &g_model, err, sizeof err) != EM_OK ||
        tok_create(g_model->gguf, &g_tok, err, sizeof err) != EM_OK) {
        fprintf(stderr, "%s: %s\n", path, err);
        exit(1);
    }
    const gguf_kv *kv = gguf_find_kv(g_model->gguf, "tokenizer.chat_template");
    gguf_str s;
    if (kv == NULL || gguf_get_arr_str(g_model->gguf, kv, 0, &s) != EM_OK ||
        coord_chat_template_detect(s.data, (size_t)s.len, &g_chat) != EM_OK ||
        g_chat.family == COORD_CHAT_NONE) {
        fprintf(stderr, "%s: no chat template recognised\n", path);
        exit(1);
    }
    g_pc = (coord_prompt_ctx){&g_model->hp, g_tok, &g_chat};
    return 0;
}

static void check_req(const coord_req *r)
{
    size_t id_len = strnlen(r->id, sizeof r->id);
    if (id_len == 0 || id_len > COORD_ID_MAX || !fuzz_utf8_valid((const uint8_t *)r->id, id_len)) {
        fuzz_fail("accepted request id of %zu bytes, empty, too long or not UTF-8", id_len);
    }
    if (r->n_prompt < 1 || r->n_prompt >= g_model->hp.n_ctx) {
        fuzz_fail("accepted a prompt of %d ids (context %d)", r->n_prompt, g_model->hp.n_ctx);
    }
    for (int i = 0; i < r->n_prompt; i++) {
        if (r->prompt[i] < 0 || r->prompt[i] >= g_model->hp.n_vocab) {
            fuzz_fail("accepted prompt id %d at %d", r->prompt[i], i);
        }
    }
    if (r->n_kv < 0 || r->n_kv > COORD_KV_MAX) {
        fuzz_fail("accepted %d kv settings", r->n_kv);
    }
}

/* rpc_unpack_checked on the input as the server receives it. */
static ProtobufCMessage *unpack(const uint8_t *data, size_t size,
                                const ProtobufCMessageDescriptor *d, char *why, size_t whylen)
{
    grpc_slice sl = grpc_slice_from_copied_buffer((const char *)data, size);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    ProtobufCMessage *m = rpc_unpack_checked(bb, d, why, whylen);
    grpc_byte_buffer_destroy(bb);
    return m;
}

static void tokenize(const uint8_t *data, size_t size)
{
    char err[512] = "";
    ProtobufCMessage *m =
        unpack(data, size, &emserve__v1__tokenize_request__descriptor, err, sizeof err);
    if (m == NULL) {
        return;
    }
    int32_t *ids = NULL;
    int n = 0;
    char *prompt = NULL;
    em_status st = coord_rpc_tokenize((const Emserve__V1__TokenizeRequest *)m, &g_pc, &ids, &n,
                                      &prompt, err, sizeof err);
    fuzz_note("tokenize: %s %d ids %s", em_status_str(st), n, st == EM_OK ? "" : err);
    for (int i = 0; st == EM_OK && i < n; i++) {
        if (ids[i] < 0 || ids[i] >= g_model->hp.n_vocab) {
            fuzz_fail("Tokenize gave id %d at %d", ids[i], i);
        }
    }
    if (st == EM_EINVAL && err[0] == 0) {
        fuzz_fail("Tokenize refused without a message");
    }
    free(ids);
    free(prompt);
    protobuf_c_message_free_unpacked(m, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tokenize(data, size);
    char why[300] = "";
    ProtobufCMessage *m =
        unpack(data, size, &emserve__v1__generate_request__descriptor, why, sizeof why);
    if (m == NULL) {
        fuzz_note("unpack: %s", why[0] ? why : "malformed");
        return 0;
    }
    coord_req *r = NULL;
    char err[512] = "";
    em_status st = coord_rpc_req_from_proto((const Emserve__V1__GenerateRequest *)m, &g_pc, 1, &r,
                                            err, sizeof err);
    fuzz_note("%s %s", em_status_str(st), st == EM_OK ? r->id : err);
    if (st == EM_OK) {
        check_req(r);
    } else if (st == EM_EINVAL && err[0] == 0) {
        fuzz_fail("refused without a message");
    }
    coord_req_free(r);
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

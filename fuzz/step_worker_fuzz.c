/* Fuzz target: the worker's side of the internal Step from wire bytes, as its rpc loop does it:
 * rpc_unpack_checked, worker_step_decode (kv parameters into ems configs), then worker_step on
 * a worker of the stories260K test model (a group of one: no gloo) with 4 slots and at most
 * 64 tokens a step, so that accepted steps run the forward pass and the compression policies.
 * Each input starts from a freshly formed group (generation 1, every slot free). A step that is
 * accepted must report one slot per run of its batch and KV entries within the context, and
 * its reply (packed as the rpc loop packs it) must pass the coordinator's check
 * (coord_step_reply_check) against what the step asked: the two ends agree. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/slice.h>

#include "common/log.h"
#include "coordinator/step_reply.h"
#include "fuzz/fuzz.h"
#include "rpc/rpc_strings.h"
#include "worker/step_decode.h"
#include "worker/wstate.h"

#define FUZZ_SLOTS      4
#define FUZZ_MAX_TOKENS 64

static worker_state g_w;

static void form(void)
{
    worker_form f = {.generation = 1,
                     .rank = 0,
                     .world = 1,
                     .n_threads = 1,
                     .max_batch_tokens = FUZZ_MAX_TOKENS,
                     .max_slots = FUZZ_SLOTS};
    char err[512];
    if (worker_group_form(&g_w, &f, err, sizeof err) != EM_OK) {
        fprintf(stderr, "forming a group of one: %s\n", err);
        exit(1);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *path = fuzz_model_or_skip(model_find_test_small(), "stories260K test model");
    grpc_init();
    em_log_set_level(EM_LOG_WARN); /* not a line per input ("joined group ...") */
    worker_state_init(&g_w, path, 1);
    form();
    return 0;
}

static void check_out(const worker_step_in *in, const worker_step_out *out)
{
    const model_hparams *hp = &g_w.m->hp;
    int64_t max_entries = (int64_t)hp->n_ctx * hp->n_layer * g_w.sd.n_units_local;
    int runs = 0;
    for (int i = 0; i < in->n_tokens; i++) {
        runs += i == 0 || in->seq[i] != in->seq[i - 1];
    }
    if (out->n_slots != runs) {
        fuzz_fail("%d slots reported for %d runs", out->n_slots, runs);
    }
    for (int i = 0; i < out->n_slots; i++) {
        if (out->entries[i] < 0 || out->entries[i] > max_entries || out->bytes[i] < 0) {
            fuzz_fail("slot %d: %lld entries, %lld bytes", out->slots[i],
                      (long long)out->entries[i], (long long)out->bytes[i]);
        }
    }
    if (out->n_logits < 0 || out->n_logits > in->n_tokens || (!in->return_logits && out->logits)) {
        fuzz_fail("%d logits rows for %d tokens", out->n_logits, in->n_tokens);
    }
    for (int i = 0; out->logits && i < out->n_logits; i++) {
        volatile float x = out->logits[(size_t)i * (size_t)hp->n_vocab + (size_t)hp->n_vocab - 1];
        (void)x;
    }
}

/* The reply as worker/rpc_worker.c's do_step packs it, checked as coord_group_step checks it
 * (the coordinator always sends want_logits, one byte per token). */
static void check_agreement(const worker_step_in *in, const worker_step_out *out, uint64_t step_id)
{
    const model_hparams *hp = &g_w.m->hp;
    Emserve__Internal__V1__StepResponse r = EMSERVE__INTERNAL__V1__STEP_RESPONSE__INIT;
    r.step_id = step_id;
    r.n_logits = out->n_logits;
    r.logits.data = (uint8_t *)out->logits;
    r.logits.len = out->logits ? sizeof(float) * (size_t)out->n_logits * (size_t)hp->n_vocab : 0;
    r.n_kv_slots = r.n_kv_entries = r.n_kv_bytes = (size_t)out->n_slots;
    r.kv_slots = out->slots;
    r.kv_entries = out->entries;
    r.kv_bytes = out->bytes;
    r.kv_bytes_peak = out->peak_bytes;
    int32_t *slots = malloc(sizeof *slots * (size_t)(in->n_tokens + 1));
    int n_slots = 0, n_want = 0;
    for (int i = 0; slots && i < in->n_tokens; i++) {
        if (i == 0 || in->seq[i] != in->seq[i - 1]) {
            slots[n_slots++] = in->seq[i];
        }
        n_want += in->want_logits[i] != 0;
    }
    coord_reply_want want = {.step_id = step_id,
                             .n_logits = in->return_logits && in->n_tokens > 0 ? n_want : 0,
                             .n_vocab = hp->n_vocab,
                             .slots = slots,
                             .n_slots = n_slots,
                             .max_entries =
                                 (int64_t)hp->n_ctx * hp->n_layer * (int64_t)g_w.sd.n_units_local};
    char why[256] = "";
    if (slots && coord_step_reply_check(&r, &want, why, sizeof why) != EM_OK) {
        fuzz_fail("the coordinator refuses the worker's reply to an accepted step: %s", why);
    }
    free(slots);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    grpc_slice sl = grpc_slice_from_copied_buffer((const char *)data, size);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    char err[512] = "";
    ProtobufCMessage *m =
        rpc_unpack_checked(bb, &emserve__internal__v1__step_request__descriptor, err, sizeof err);
    grpc_byte_buffer_destroy(bb);
    if (m == NULL) {
        fuzz_note("unpack: %s", err[0] ? err : "malformed");
        return 0;
    }
    worker_step_in in;
    worker_step_out out;
    worker_open *opens = NULL;
    worker_policy *pols = NULL;
    memset(&in, 0, sizeof in);
    memset(&out, 0, sizeof out);
    em_status st = worker_step_decode((const Emserve__Internal__V1__StepRequest *)m, &in, &opens,
                                      &pols, err, sizeof err);
    if (st == EM_OK) {
        st = worker_step(&g_w, &in, &out, err, sizeof err);
        if (st == EM_OK) {
            check_out(&in, &out);
            if (in.want_logits != NULL) {
                check_agreement(&in, &out,
                                ((const Emserve__Internal__V1__StepRequest *)m)->step_id);
            }
        }
    }
    fuzz_note("%s %s", em_status_str(st), st == EM_OK ? "" : err);
    if (st != EM_OK && st != EM_ENOMEM && err[0] == 0) {
        fuzz_fail("step refused (%s) without a message", em_status_str(st));
    }
    worker_step_out_free(&out);
    free(opens);
    free(pols);
    protobuf_c_message_free_unpacked(m, NULL);
    /* the next input starts from free slots */
    worker_group_leave(&g_w);
    form();
    return 0;
}

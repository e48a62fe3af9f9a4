/* Fuzz target: the coordinator's check of a worker's StepResponse (coord_step_reply_check)
 * from wire bytes. The first 4 bytes of an input say what the step asked: byte 0 bit 0 = rank 0
 * (the rank that returns logits), byte 1 % 5 = slots in the batch, byte 2 = the first slot
 * (the others follow 3 apart), byte 3 % 5 = logits rows wanted; the vocabulary is 8, the step id
 * 7 and a slot holds at most 1000 entries. The rest is the reply as it came off the wire
 * (unpacked as rpc_unpack does). When the check passes, everything coord_group_step then reads
 * is read here the same way (entry and byte counts per slot, the logits copied into a buffer of
 * exactly the size asked for), so ASan catches a check that lets a short or long array through
 * - the coordinator's memory corruption of issue 12 item 1. */
#include <stdlib.h>
#include <string.h>

#include "coordinator/step_reply.h"
#include "fuzz/fuzz.h"

#define FUZZ_VOCAB 8

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4) {
        return 0;
    }
    int32_t slots[4];
    int rank0 = data[0] & 1, n_slots = data[1] % 5;
    for (int i = 0; i < n_slots; i++) {
        slots[i] = (int32_t)data[2] + 3 * i;
    }
    coord_reply_want want = {7, rank0 ? data[3] % 5 : 0, FUZZ_VOCAB, slots, n_slots, 1000};
    Emserve__Internal__V1__StepResponse *sr =
        (Emserve__Internal__V1__StepResponse *)protobuf_c_message_unpack(
            &emserve__internal__v1__step_response__descriptor, NULL, size - 4, data + 4);
    if (sr == NULL) {
        return 0;
    }
    char why[256] = "";
    em_status st = coord_step_reply_check(sr, &want, why, sizeof why);
    fuzz_note("%s %s", em_status_str(st), why);
    if (st == EM_OK) {
        int64_t entries = 0, bytes = 0;
        for (int i = 0; i < n_slots; i++) {
            entries += sr->kv_entries[i];
            bytes += sr->kv_bytes[i];
        }
        size_t cap = sizeof(float) * (size_t)want.n_logits * FUZZ_VOCAB;
        float *logits = malloc(cap ? cap : 1);
        if (logits && sr->logits.len) {
            memcpy(logits, sr->logits.data, sr->logits.len);
        }
        free(logits);
        if (entries < 0 || entries > (int64_t)n_slots * 1000 || sr->kv_bytes_peak < 0) {
            fuzz_fail("accepted %lld entries in %d slots", (long long)entries, n_slots);
        }
        /* the coordinator sums every count over the slots and its workers (COORD_MAX_WORKERS,
         * 64) */
        const int64_t sum_max = INT64_MAX / (64 * 5);
        for (size_t i = 0; i < sr->n_kv_evicted; i++) {
            if (sr->kv_evicted[i] > sum_max || sr->kv_merged[i] > sum_max ||
                sr->kv_quantized[i] > sum_max || sr->kv_bytes_quant[i] > sum_max) {
                fuzz_fail("accepted a count that overflows a sum over workers (slot %zu)", i);
            }
        }
        if (bytes > sum_max || sr->kv_bytes_peak > sum_max) {
            fuzz_fail("accepted %lld KV bytes that overflow a sum over workers", (long long)bytes);
        }
    } else if (why[0] == 0) {
        fuzz_fail("refused without a message");
    }
    protobuf_c_message_free_unpacked(&sr->base, NULL);
    return 0;
}

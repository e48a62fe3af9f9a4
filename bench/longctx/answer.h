/* The answer of a streamed generation: the text of its chunks up to and including the first
 * chunk that carries an end-of-turn id (what longctx_bench judges the passkey on when requests
 * generate past their end of turn with ignore_eos). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

typedef struct lc_answer {
    char *text; /* NUL-terminated (NULL before the first chunk) */
    size_t len;
    int ended; /* a chunk carried an end id: later chunks are not added */
} lc_answer;

/* Adds one chunk (its ids and text delta); end_ids[2] are the end-of-turn ids, -1 = none.
 * EM_ENOMEM leaves the answer as it was. */
em_status lc_answer_add(lc_answer *a, const int32_t *ids, int n, const char *text,
                        const int32_t end_ids[2]);
void lc_answer_free(lc_answer *a);

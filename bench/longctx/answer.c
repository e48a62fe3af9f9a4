/* The answer of a streamed generation, cut at the first end-of-turn chunk. */
#include "bench/longctx/answer.h"

#include <stdlib.h>
#include <string.h>

em_status lc_answer_add(lc_answer *a, const int32_t *ids, int n, const char *text,
                        const int32_t end_ids[2])
{
    if (a->ended)
        return EM_OK;
    size_t len = text ? strlen(text) : 0;
    char *t = realloc(a->text, a->len + len + 1);
    if (!t)
        return EM_ENOMEM;
    memcpy(t + a->len, text ? text : "", len + 1);
    a->text = t;
    a->len += len;
    for (int i = 0; i < n; i++)
        a->ended |= ids[i] >= 0 && (ids[i] == end_ids[0] || ids[i] == end_ids[1]);
    return EM_OK;
}

void lc_answer_free(lc_answer *a)
{
    free(a->text);
    memset(a, 0, sizeof *a);
}

/* TODO(tok-merge): temporary stand-in for tok_encode_ex / tok_add_bos_default (see
 * tok_ex_stub.h); delete when the gpt2-BPE tokenizer branch is merged. */
#include "model/tokenizer.h"

em_status tok_encode_ex(const tokenizer *t, const char *text, size_t len, unsigned flags,
                        int32_t *ids, int cap, int *n_out)
{
    return tok_encode(t, text, len, (flags & TOK_ADD_BOS) != 0, ids, cap, n_out);
}

int tok_add_bos_default(const tokenizer *t)
{
    (void)t;
    return 1;
}

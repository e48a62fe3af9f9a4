/* bench/longctx/answer: the streamed text is kept up to and including the first chunk that
 * carries an end-of-turn id, whatever follows (table-driven; each case is a chunk sequence). */
#include <stdio.h>
#include <string.h>

#include "bench/longctx/answer.h"

#define MAXC 6

typedef struct chunk {
    int32_t ids[3];
    int n;
    const char *text;
} chunk;

typedef struct tcase {
    const char *name;
    int32_t end_ids[2];
    chunk c[MAXC];
    int n;
    const char *want;
    int want_ended;
} tcase;

static const tcase cases[] = {
    {"no end id: everything", {2, 0}, {{{5}, 1, "The "}, {{6}, 1, "key"}}, 2, "The key", 0},
    {"cut after the end chunk",
     {2, 0},
     {{{5}, 1, "The key is 1."}, {{2}, 1, ""}, {{7}, 1, " Then more"}, {{8}, 1, " text"}},
     4,
     "The key is 1.",
     1},
    {"the second end id ends it too",
     {2, 0},
     {{{5}, 1, "A"}, {{0}, 1, "B"}, {{9}, 1, "C"}},
     3,
     "AB",
     1},
    {"an end id inside a multi-id chunk keeps that chunk's text",
     {2, 0},
     {{{5, 2, 7}, 3, "x<end>y"}, {{8}, 1, "z"}},
     2,
     "x<end>y",
     1},
    {"end ids of -1 never match (a tokenizer without them)",
     {-1, -1},
     {{{-1}, 1, "a"}, {{2}, 1, "b"}},
     2,
     "ab",
     0},
    {"empty and NULL texts add nothing", {2, 0}, {{{5}, 1, ""}, {{6}, 1, NULL}}, 2, "", 0},
};

int main(void)
{
    int fails = 0;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const tcase *t = &cases[k];
        lc_answer a = {0};
        for (int i = 0; i < t->n; i++) {
            if (lc_answer_add(&a, t->c[i].ids, t->c[i].n, t->c[i].text, t->end_ids) != EM_OK) {
                printf("FAIL %s: add\n", t->name);
                fails++;
            }
        }
        const char *got = a.text ? a.text : "";
        if (strcmp(got, t->want) != 0 || a.ended != t->want_ended || a.len != strlen(t->want)) {
            printf("FAIL %s: got '%s' (ended %d, len %zu), want '%s' (ended %d)\n", t->name, got,
                   a.ended, a.len, t->want, t->want_ended);
            fails++;
        }
        lc_answer_free(&a);
        if (a.text || a.len || a.ended) {
            printf("FAIL %s: free leaves state\n", t->name);
            fails++;
        }
    }
    printf("%s: %zu cases, %d failures\n", fails ? "FAIL" : "PASS", sizeof cases / sizeof cases[0],
           fails);
    return fails != 0;
}

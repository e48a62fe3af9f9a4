/* eval/rouge.h: ROUGE-1 / ROUGE-2 / ROUGE-L F1 against hand-computed values (table-driven,
 * exact to 1e-12). Cases that fail when the LCS is replaced by unigram overlap ("a b c d" vs
 * "d c b a"), by the longest common substring ("a x b y c"), when n-gram counts are not clipped
 * ("the the the the"), when case or punctuation count, or when identical texts do not score 1. */
#include <math.h>
#include <stdio.h>

#include "eval/rouge.h"
#include "tests/testutil/testutil.h"

int main(void)
{
    static const struct {
        const char *pred, *ref;
        double r1, r2, rl;
    } k[] = {
        {"the cat sat on the mat", "the cat sat on the mat", 1, 1, 1},
        /* 7 vs 6 tokens: unigrams 6 common (P 6/7, R 1); bigrams 4 of 6 / 5; LCS 6 */
        {"the cat was found under the bed", "the cat was under the bed", 12.0 / 13, 16.0 / 22,
         12.0 / 13},
        /* same words reversed: unigram F1 1, no bigram, LCS 1 of 4 */
        {"a b c d", "d c b a", 1, 0, 0.25},
        {"b a", "a b", 1, 0, 0.5},
        /* LCS a-b-c skips x and y (a common substring would be 1 token) */
        {"a x b y c", "a b c", 0.75, 0, 0.75},
        /* clipping: "the" counts once (P 1/4, R 1/2) */
        {"the the the the", "the cat", 1.0 / 3, 0, 1.0 / 3},
        /* case and punctuation ignored; "2.0" is the tokens 2 and 0 */
        {"Hello, World! Version 2.0", "hello world version 2 0", 1, 1, 1},
        /* a single identical token agrees on ROUGE-2 too (identical sequences) */
        {"Vim.", "vim", 1, 1, 1},
        {"", "some reference", 0, 0, 0},
        {"...", "!!", 1, 1, 1}, /* both without tokens: identical */
        {"completely different", "nothing shared here", 0, 0, 0},
        /* no stemming: "making" != "make"; P 2/3, R 2/5 -> 1/2; bigram "big changes" 1 of 2 / 4
         * -> 1/3; LCS 2 */
        {"making big changes", "how to make big changes", 0.5, 1.0 / 3, 0.5},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        rouge_f r;
        CHECK(rouge_score(k[i].pred, k[i].ref, &r) == EM_OK, "case %zu", i);
        CHECK(fabs(r.r1 - k[i].r1) < 1e-12, "R1(%s | %s) = %.15g, want %.15g", k[i].pred, k[i].ref,
              r.r1, k[i].r1);
        CHECK(fabs(r.r2 - k[i].r2) < 1e-12, "R2(%s | %s) = %.15g, want %.15g", k[i].pred, k[i].ref,
              r.r2, k[i].r2);
        CHECK(fabs(r.rl - k[i].rl) < 1e-12, "RL(%s | %s) = %.15g, want %.15g", k[i].pred, k[i].ref,
              r.rl, k[i].rl);
    }
    TEST_END();
}

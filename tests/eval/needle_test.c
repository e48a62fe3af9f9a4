/* eval/needle.h: answer scoring (containment, SQuAD exact match and token F1, table-driven),
 * haystack loading (sources named, missing file an error) and, with SmolLM2's tokenizer, the
 * needle prompt: at most the requested tokens and close to it, the fact inside once, placed by
 * depth, ChatML around it, a too-short haystack an error. The QA prompt holds the document and
 * the question. The prompt part prints SKIPPED when SmolLM2 is not installed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/needle.h"
#include "model/model.h"
#include "tests/testutil/testutil.h"

static void test_scoring(void)
{
    static const struct {
        const char *pred, *ref;
        double em, f1;
    } k[] = {
        {"Saffron", "saffron", 1, 1},
        {"The answer is: saffron.", "saffron", 0, 0.5},
        {"the Netherlands", "Netherlands", 1, 1}, /* articles dropped */
        {"30 days.", "30 days", 1, 1},
        {"thirty days", "30 days", 0, 0.5},
        {"", "30 days", 0, 0},
        {"Free Software Foundation, Inc.", "Free Software Foundation", 0, 2 * 0.75 / 1.75},
        {"days days days", "30 days", 0, 2 * (1 / 3.0) * 0.5 / (1 / 3.0 + 0.5)},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        double em = nd_exact_match(k[i].pred, k[i].ref), f1 = nd_token_f1(k[i].pred, k[i].ref);
        CHECK(em == k[i].em, "EM(%s, %s) = %g, want %g", k[i].pred, k[i].ref, em, k[i].em);
        CHECK(fabs(f1 - k[i].f1) < 1e-12, "F1(%s, %s) = %g, want %g", k[i].pred, k[i].ref, f1,
              k[i].f1);
    }
    CHECK(nd_contains("It is SAFFRON, I think", "saffron"), "case-insensitive containment");
    CHECK(!nd_contains("saffro", "saffron") && !nd_contains("x", ""), "no false containment");
    int n = 0;
    const nd_needle *nd = nd_needles(&n);
    CHECK(n >= 5, "%d needles", n);
    for (int i = 0; i < n; i++)
        CHECK(nd_contains(nd[i].fact, nd[i].answer), "needle %d: answer not in its fact", i);
}

static void test_haystack(void)
{
    char err[256];
    nd_haystack h;
    const char *two[] = {"/usr/share/common-licenses/GPL-3", "/usr/share/common-licenses/GFDL-1.3"};
    const char *missing[] = {"/usr/share/common-licenses/GPL-3", "/nonexistent/file"};
    CHECK(nd_haystack_load(missing, 2, &h, err, sizeof err) == EM_EIO && !h.text &&
              strstr(err, "/nonexistent/file"),
          "missing file: %s", err);
    CHECK(nd_haystack_load(two, 0, &h, err, sizeof err) == EM_EINVAL, "no file");
    if (nd_haystack_load(two, 2, &h, err, sizeof err) != EM_OK) {
        printf("SKIPPED: %s\n", err); /* the licences are part of Debian's base-files */
        return;
    }
    CHECK(!strcmp(h.sources, "GPL-3+GFDL-1.3"), "sources %s", h.sources);
    CHECK(h.len > 50000 && strlen(h.text) == h.len, "length %zu", h.len);
    nd_haystack_free(&h);
}

static void test_prompts(void)
{
    const char *path = model_find_default();
    if (!path) {
        printf("SKIPPED: SmolLM2 not installed (needle prompts)\n");
        return;
    }
    char err[512];
    model *m = NULL;
    tokenizer *tok = NULL;
    REQUIRE(model_load(path, &m, err, sizeof err) == EM_OK, "%s", err);
    REQUIRE(tok_create(m->gguf, &tok, err, sizeof err) == EM_OK, "%s", err);
    const char *files[] = {"/usr/share/common-licenses/GPL-3"};
    nd_haystack h;
    REQUIRE(nd_haystack_load(files, 1, &h, err, sizeof err) == EM_OK, "%s", err);
    int n_nd = 0;
    const nd_needle *nd = nd_needles(&n_nd);
    static const int sizes[] = {300, 1024, 4096};
    static const double depths[] = {0, 0.5, 1};
    for (int si = 0; si < 3; si++) {
        int where[3] = {0};
        for (int di = 0; di < 3; di++) {
            int32_t *ids = NULL;
            int n = 0;
            REQUIRE(nd_needle_prompt(tok, &h, &nd[1], sizes[si], depths[di], &ids, &n) == EM_OK,
                    "prompt %d", sizes[si]);
            CHECK(n <= sizes[si] && n > sizes[si] - 48, "%d tokens for %d", n, sizes[si]);
            CHECK(ids[0] == 1 && ids[n - 4] == 1 && ids[n - 6] == 2, "not ChatML");
            char *text = malloc((size_t)n * 64 + 1);
            size_t len = 0;
            for (int i = 0; i < n; i++)
                len += tok_piece_bytes(tok, i ? ids[i - 1] : -1, ids[i], text + len, 64);
            text[len] = 0;
            const char *f = strstr(text, nd[1].fact);
            CHECK(f && !strstr(f + 1, nd[1].fact), "fact not inside once (%d, %g)", sizes[si],
                  depths[di]);
            CHECK(strstr(text, nd[1].question) > f, "question missing or before the fact");
            where[di] = f ? (int)(f - text) : -1;
            free(text);
            free(ids);
        }
        CHECK(where[0] < where[1] && where[1] < where[2], "depths 0/0.5/1 at %d/%d/%d", where[0],
              where[1], where[2]);
    }
    int32_t *ids = NULL;
    int n = 0;
    CHECK(nd_needle_prompt(tok, &h, &nd[0], 20000, 0.5, &ids, &n) == EM_EINVAL && !ids,
          "20K tokens from one licence");
    CHECK(nd_needle_prompt(tok, &h, &nd[0], 1024, 1.5, &ids, &n) == EM_EINVAL, "depth 1.5");
    nd_haystack_free(&h);
    const char *doc = "The pass word of the day is tulip.";
    REQUIRE(nd_qa_prompt(tok, doc, strlen(doc), "What is the pass word?", &ids, &n) == EM_OK,
            "qa prompt");
    CHECK(n > 20 && n < 120 && ids[n - 4] == 1, "qa prompt of %d tokens", n);
    free(ids);
    tok_free(tok);
    model_free(m);
}

int main(void)
{
    test_scoring();
    test_haystack();
    test_prompts();
    TEST_END();
}

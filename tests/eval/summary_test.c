/* eval/summary.h: splitting a Vim user-manual chapter (title, intro = reference, body between
 * the first and last rules = document: no intro, section list or footer in it) and any other
 * text (first paragraph = reference); unreadable, reference-only and empty files refused with
 * the path in the message; the real usr_06.txt when vim-runtime is installed. With SmolLM2's
 * tokenizer: the capped prompt holds at most cap tokens, is cut after a blank line, keeps the
 * whole document when it fits, and a cap below the empty prompt is refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/summary.h"
#include "model/model.h"
#include "tests/testutil/testutil.h"

#define RULE "=============================================================================="

static const char k_vim[] =
    "*usr_99.txt*\tFor Vim version 9.0.  Last change: 2020 Jan 01\n\n"
    "\t\t     VIM USER MANUAL - by Bram Moolenaar\n\n"
    "\t\t\t  Testing the splitter\n\n\n"
    "This chapter tests  the\nsplitter of chapters.\n\n"
    "|99.1|\tFirst section\n|99.2|\tSecond section\n\n"
    "     Next chapter: |usr_100.txt|  More\n"
    "Table of contents: |usr_toc.txt|\n\n" RULE "\n"
    "*99.1*\tFirst section\n\nBody text here.\n\n" RULE "\n"
    "*99.2*\tSecond section\n\nMore body.\n\n" RULE "\n\n"
    "Next chapter: |usr_100.txt|  More\n\nCopyright: see |manual-copyright|\n";

static const char *write_tmp(const char *name, const char *text)
{
    static char path[4][512];
    static int k;
    char *p = path[k++ % 4];
    snprintf(p, sizeof path[0], "%s/%s", tu_tmpdir(), name);
    FILE *f = fopen(p, "w");
    REQUIRE(f, "cannot write %s", p);
    fputs(text, f);
    fclose(f);
    return p;
}

static void test_split(void)
{
    char err[512];
    sd_doc d;
    REQUIRE(sd_load(write_tmp("usr_99.txt", k_vim), &d, err, sizeof err) == EM_OK, "%s", err);
    char *doc = strndup(d.text + d.doc, d.doc_len);
    CHECK(!strcmp(d.title, "Testing the splitter"), "title [%s]", d.title);
    CHECK(!strcmp(d.ref, "This chapter tests the splitter of chapters."), "ref [%s]", d.ref);
    CHECK(!strncmp(doc, "*99.1*\tFirst section", 20), "document starts [%.30s]", doc);
    CHECK(strstr(doc, "More body.") && strstr(doc, "*99.2*"), "document lacks the last section");
    CHECK(!strstr(doc, "Next chapter") && !strstr(doc, "Copyright") && !strstr(doc, "|99.1|") &&
              !strstr(doc, "This chapter"),
          "header, intro or footer in the document [%s]", doc);
    CHECK(!strcmp(d.source, "usr_99.txt"), "source %s", d.source);
    free(doc);
    sd_free(&d);

    REQUIRE(sd_load(write_tmp("plain.txt", "\n  Title line\n second line\n\nParagraph one.\n\n"
                                           "Paragraph two.\n"),
                    &d, err, sizeof err) == EM_OK,
            "%s", err);
    CHECK(!strcmp(d.ref, "Title line second line"), "plain ref [%s]", d.ref);
    CHECK(!strcmp(d.text + d.doc, "Paragraph one.\n\nParagraph two.\n") &&
              d.doc_len == strlen(d.text + d.doc),
          "plain document [%s]", d.text + d.doc);
    sd_free(&d);

    CHECK(sd_load(write_tmp("ref_only.txt", "Only a title\n\n \n"), &d, err, sizeof err) ==
                  EM_EINVAL &&
              strstr(err, "ref_only.txt") && !d.text,
          "reference-only file: %s", err);
    CHECK(sd_load(write_tmp("empty.txt", ""), &d, err, sizeof err) == EM_EIO &&
              strstr(err, "empty.txt"),
          "empty file: %s", err);
    CHECK(sd_load("/nonexistent/usr_01.txt", &d, err, sizeof err) == EM_EIO &&
              strstr(err, "/nonexistent/usr_01.txt"),
          "missing file: %s", err);

    if (sd_load("/usr/share/vim/vim90/doc/usr_06.txt", &d, err, sizeof err) != EM_OK) {
        printf("SKIPPED: %s (vim-runtime not installed)\n", err);
        return;
    }
    doc = strndup(d.text + d.doc, d.doc_len);
    CHECK(!strcmp(d.title, "Using syntax highlighting"), "usr_06 title [%s]", d.title);
    CHECK(!strncmp(d.ref, "Black and white text is boring.", 31) &&
              strstr(d.ref, "with the colors you see on the screen."),
          "usr_06 ref [%s]", d.ref);
    CHECK(!strncmp(doc, "*06.1*", 6) && !strstr(doc, "Black and white text") &&
              !strstr(doc, "manual-copyright"),
          "usr_06 document");
    free(doc);
    sd_free(&d);
}

static void test_prompt(void)
{
    const char *path = model_find_default();
    if (!path) {
        printf("SKIPPED: SmolLM2 not installed (summary prompts)\n");
        return;
    }
    char err[512];
    model *m = NULL;
    tokenizer *tok = NULL;
    sd_doc d;
    REQUIRE(model_load(path, &m, err, sizeof err) == EM_OK, "%s", err);
    REQUIRE(tok_create(m->gguf, &tok, err, sizeof err) == EM_OK, "%s", err);
    REQUIRE(sd_load("/usr/share/common-licenses/GPL-3", &d, err, sizeof err) == EM_OK, "%s", err);
    CHECK(!strcmp(d.ref, "GNU GENERAL PUBLIC LICENSE Version 3, 29 June 2007"), "GPL-3 ref [%s]",
          d.ref);
    int32_t *ids = NULL;
    int n = 0;
    size_t used = 0;
    const char *doc = d.text + d.doc;
    REQUIRE(sd_prompt(tok, &d, 400, &ids, &n, &used) == EM_OK, "capped prompt");
    CHECK(n <= 400 && n > 250, "%d tokens for a cap of 400", n);
    CHECK(used > 0 && used < d.doc_len && doc[used - 1] == '\n' && doc[used - 2] == '\n',
          "cut at %zu of %zu, not after a blank line", used, d.doc_len);
    CHECK(ids[0] == 1 && ids[n - 4] == 1 && ids[n - 6] == 2, "not ChatML");
    free(ids);
    REQUIRE(sd_prompt(tok, &d, 8000, &ids, &n, &used) == EM_OK, "whole prompt");
    CHECK(used == d.doc_len && n > 7000 && n <= 8000, "GPL-3 whole: %d tokens, %zu bytes", n, used);
    free(ids);
    ids = NULL;
    CHECK(sd_prompt(tok, &d, 40, &ids, &n, &used) == EM_EINVAL && !ids, "cap 40 accepted");
    sd_free(&d);
    tok_free(tok);
    model_free(m);
}

int main(void)
{
    test_split();
    test_prompt();
    TEST_END();
}

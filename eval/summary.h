/* Summarization documents for the long-context harness (longctx --task summary): a text file
 * split into the document the model reads and a reference summary written by the document's
 * own author, so that no reference is hand-written and the reference never appears in the
 * prompt.
 *  - A Vim user-manual chapter (the file begins with "*usr_"; /usr/share/vim/vim90/doc/usr_*.txt
 *    of vim-runtime): the reference is the chapter's intro paragraph (the lines between the
 *    title and the section list, "This chapter ..."), the document the chapter body after the
 *    first "=====" rule up to its last rule (header, title, intro, section list and the
 *    "Next chapter" / copyright footer left out).
 *  - Any other text: the reference is its first paragraph (up to the first blank line), the
 *    document the rest (e.g. a licence: its title block, then the licence). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "model/tokenizer.h"

typedef struct sd_doc {
    char *text; /* the whole file; the document is text[doc, doc + doc_len) */
    size_t doc, doc_len;
    char ref[2048];   /* the reference, white space collapsed */
    char title[128];  /* Vim chapter title, or the file's base name */
    char source[256]; /* the file's base name */
} sd_doc;

/* Reads and splits path. Unreadable / empty file, no reference or an empty document: EM_EIO /
 * EM_EINVAL with a message in err. */
em_status sd_load(const char *path, sd_doc *d, char *err, size_t errlen);
void sd_free(sd_doc *d);

/* The summary prompt (nd_summary_prompt) of the document, cut if needed so that the prompt has
 * at most cap tokens: right after the last blank line before the estimated cut (after the last
 * line end when no blank line precedes it), walked back until it fits. *used: document bytes kept
 * (= d->doc_len when not cut). EM_EINVAL when even the empty document does not fit. */
em_status sd_prompt(const tokenizer *tok, const sd_doc *d, int cap, int32_t **ids, int *n,
                    size_t *used);

/* The byte-level BPE pre-tokenizers (model/tok_pretok.c) and the Unicode tables under them,
 * without a model: word splits of the gpt2 and smollm families (table-driven, expected words
 * worked out from the regexes in tok_pretok.h), the lax UTF-8 decoder, category and
 * White_Space lookups. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/tok_pretok.h"
#include "model/tok_utf8.h"
#include "model/unicode_cat.h"
#include "tests/testutil/testutil.h"

/* words: the expected split, joined with '|' (the inputs contain no '|'). */
static const struct {
    pretok_kind kind;
    const char *text;
    const char *words;
} k_splits[] = {
    {PRETOK_GPT2, "Hello world", "Hello| world"},
    {PRETOK_GPT2, "abc 123", "abc| 123"},
    {PRETOK_SMOLLM, "abc 123", "abc| |1|2|3"},
    {PRETOK_SMOLLM, "x1y", "x|1|y"},
    {PRETOK_GPT2, "a   b", "a|  | b"},
    {PRETOK_GPT2, "a   ", "a|   "},
    {PRETOK_GPT2, "   a", "  | a"},
    {PRETOK_GPT2, "I'm you're we've it'll he'd", "I|'m| you|'re| we|'ve| it|'ll| he|'d"},
    {PRETOK_GPT2, "I'M", "I|'|M"}, /* contractions are lower case only */
    {PRETOK_GPT2, "'", "'"},
    {PRETOK_GPT2, "a'", "a|'"},
    {PRETOK_GPT2, "don't!", "don|'t|!"},
    {PRETOK_GPT2, "x  \n\ny", "x|  \n|\n|y"}, /* \s+(?!\S) leaves the last space */
    {PRETOK_GPT2, "hi!!! ok", "hi|!!!| ok"},
    {PRETOK_GPT2, " !? x", " !?| x"},
    {PRETOK_GPT2, "\t\tif", "\t|\t|if"}, /* only " " joins a word */
    {PRETOK_GPT2, "a\n", "a|\n"},
    {PRETOK_GPT2, "a\r\nb", "a|\r|\n|b"},
    {PRETOK_SMOLLM, "2024-01", "2|0|2|4|-|0|1"},
    {PRETOK_SMOLLM, "v 12", "v| |1|2"}, /* " ?\p{N}+" cannot reach across the split */
    {PRETOK_GPT2, "caf\xc3\xa9 na\xc3\xafve", "caf\xc3\xa9| na\xc3\xafve"},
    {PRETOK_GPT2,
     "a\xc2\xa0"
     "b",
     "a|\xc2\xa0|b"}, /* NBSP is \s, not " " */
    {PRETOK_GPT2, "\xe4\xb8\xad\xe6\x96\x87 x", "\xe4\xb8\xad\xe6\x96\x87| x"},
    {PRETOK_GPT2, "hi \xf0\x9f\x98\x80\xf0\x9f\x98\x80", "hi| \xf0\x9f\x98\x80\xf0\x9f\x98\x80"},
    {PRETOK_SMOLLM, "\xd9\xa3x", "\xd9\xa3|x"}, /* ARABIC-INDIC THREE is \p{N} */
    {PRETOK_GPT2, "", ""},
};

static void check_split(size_t k)
{
    const char *text = k_splits[k].text;
    size_t len = strlen(text);
    uint32_t cps[64];
    size_t n = tok_utf8_decode_lax(text, len, cps);
    char got[256] = "", u[4];
    pretok_iter it;
    pretok_begin(&it, k_splits[k].kind, cps, n);
    size_t s, e, o = 0;
    while (pretok_next(&it, &s, &e)) {
        CHECK(e > s, "case %zu: empty word", k);
        if (o)
            got[o++] = '|';
        for (size_t i = s; i < e; i++) {
            int m = tok_utf8_put(cps[i], u);
            memcpy(got + o, u, (size_t)m);
            o += (size_t)m;
        }
    }
    got[o] = 0;
    const char *want = k_splits[k].words;
    CHECK(strcmp(got, want) == 0, "case %zu '%s': got '%s' want '%s'", k, text, got, want);
}

/* llama.cpp's lax decoding: one U+FFFD per bad byte, overlong forms and surrogates accepted. */
static const struct {
    const char *in;
    uint32_t cps[4];
    size_t n;
} k_lax[] = {
    {"a", {'a'}, 1},
    {"\xc3\xa9", {0xe9}, 1},
    {"\xff", {0xfffd}, 1},
    {"\xc3", {0xfffd}, 1},
    {"\xe2\x82 ", {0xfffd, 0xfffd, ' '}, 3},
    {"\xc0\x80", {0}, 1},
    {"\xed\xa0\x80", {0xd800}, 1},
    {"\xf4\x90\x80\x80", {0xfffd, 0xfffd, 0xfffd, 0xfffd}, 4}, /* > U+10FFFF */
    {"\xf0\x9f\x98\x80", {0x1f600}, 1},
    {"\x80\x80", {0xfffd, 0xfffd}, 2},
};

static void check_lax(size_t k)
{
    uint32_t cps[8];
    size_t n = tok_utf8_decode_lax(k_lax[k].in, strlen(k_lax[k].in), cps);
    CHECK(n == k_lax[k].n && memcmp(cps, k_lax[k].cps, n * sizeof *cps) == 0,
          "lax case %zu: %zu cps", k, n);
}

/* Categories, including code points new in Unicode 15.0/15.1 (classified) and 16.0 (not yet). */
static const struct {
    uint32_t cp;
    uint8_t flags;
} k_cats[] = {
    {'A', UCAT_LETTER},         {'5', UCAT_NUMBER},          {' ', UCAT_SEPARATOR},
    {'!', UCAT_PUNCT},          {'$', UCAT_SYMBOL},          {0, UCAT_CONTROL},
    {0xe9, UCAT_LETTER},        {0x663, UCAT_NUMBER},        {0x2167, UCAT_NUMBER},
    {0xbd, UCAT_NUMBER},        {0x301, UCAT_MARK},          {0x1f600, UCAT_SYMBOL},
    {0x1fae8, UCAT_SYMBOL},     {0x2ffc, UCAT_SYMBOL},       {0x2ebf0, UCAT_LETTER},
    {0x1cc00, UCAT_UNASSIGNED}, {0xe000, UCAT_CONTROL},      {0xd800, UCAT_CONTROL},
    {0x378, UCAT_UNASSIGNED},   {0x110000, UCAT_UNASSIGNED}, {0x4e2d, UCAT_LETTER},
    {0x3000, UCAT_SEPARATOR},   {0x10fffd, UCAT_CONTROL},    {0x10ffff, UCAT_UNASSIGNED},
};

static uint8_t table_flags(uint32_t cp)
{
    int i = 0;
    while (i + 1 < ucat_n_ranges && ucat_range_start[i + 1] <= cp)
        i++;
    return ucat_range_flags[i];
}

static void check_unicode(void)
{
    for (size_t k = 0; k < sizeof k_cats / sizeof k_cats[0]; k++)
        CHECK(ucat_flags(k_cats[k].cp) == k_cats[k].flags, "U+%04X: flags 0x%02x want 0x%02x",
              k_cats[k].cp, ucat_flags(k_cats[k].cp), k_cats[k].flags);
    for (uint32_t c = 0; c < 0x300; c++) /* the ASCII shortcut and the binary search agree */
        CHECK(ucat_flags(c) == table_flags(c), "U+%04X: 0x%02x vs table 0x%02x", c, ucat_flags(c),
              table_flags(c));
    CHECK(ucat_range_start[0] == 0 && ucat_n_ranges > 2000, "table of %d ranges", ucat_n_ranges);
    int n_space = 0;
    for (uint32_t c = 0; c < 0x110000; c++)
        n_space += ucat_is_space(c);
    CHECK(n_space == 25, "%d White_Space code points, want 25", n_space);
    CHECK(ucat_is_space('\t') && ucat_is_space(0x85) && ucat_is_space(0x200a) &&
              !ucat_is_space(0x200b) && !ucat_is_space(0x1c),
          "White_Space members");
}

static void check_names(void)
{
    pretok_kind k;
    CHECK(pretok_from_name("smollm", 6, &k) == EM_OK && k == PRETOK_SMOLLM, "smollm");
    CHECK(pretok_from_name("starcoder", 9, &k) == EM_OK && k == PRETOK_SMOLLM, "starcoder");
    CHECK(pretok_from_name("gpt-2", 5, &k) == EM_OK && k == PRETOK_GPT2, "gpt-2");
    CHECK(pretok_from_name("gpt-2x", 5, &k) == EM_OK, "length-delimited name");
    CHECK(pretok_from_name("llama-bpe", 9, &k) == EM_EUNSUPPORTED, "llama-bpe is not implemented");
    CHECK(pretok_from_name("", 0, &k) == EM_EUNSUPPORTED, "empty name");
}

int main(void)
{
    for (size_t k = 0; k < sizeof k_splits / sizeof k_splits[0]; k++)
        check_split(k);
    for (size_t k = 0; k < sizeof k_lax / sizeof k_lax[0]; k++)
        check_lax(k);
    check_unicode();
    check_names();
    TEST_END();
}

/* Unicode general categories (Unicode 15.1.0, as llama.cpp's tables) and White_Space, the
 * character classes of the byte-level BPE pre-tokenizer (\p{L}, \p{N}, \s). The range table
 * is generated (scripts/gen_unicode_cat.py -> unicode_cat_data.c). */
#pragma once
#include <stdint.h>

enum {
    UCAT_UNASSIGNED = 0x01, /* Cn */
    UCAT_NUMBER = 0x02,     /* N* */
    UCAT_LETTER = 0x04,     /* L* */
    UCAT_SEPARATOR = 0x08,  /* Z* */
    UCAT_MARK = 0x10,       /* M* */
    UCAT_PUNCT = 0x20,      /* P* */
    UCAT_SYMBOL = 0x40,     /* S* */
    UCAT_CONTROL = 0x80,    /* Cc Cf Co Cs */
};

extern const int ucat_n_ranges;
extern const uint32_t ucat_range_start[];
extern const uint8_t ucat_range_flags[];

/* Category flag of cp (exactly one bit); UCAT_UNASSIGNED beyond U+10FFFF. */
uint8_t ucat_flags(uint32_t cp);
/* 1 for the 25 White_Space code points (PropList.txt), else 0. */
int ucat_is_space(uint32_t cp);

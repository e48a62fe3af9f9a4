/* Lookups in the generated category ranges (binary search; ASCII, the common case, directly)
 * and the White_Space list. */
#include "model/unicode_cat.h"

#include <string.h>

static uint8_t ascii_flags(uint32_t c)
{
    if (c < 0x20 || c == 0x7f)
        return UCAT_CONTROL;
    if (c == ' ')
        return UCAT_SEPARATOR;
    if (c >= '0' && c <= '9')
        return UCAT_NUMBER;
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))
        return UCAT_LETTER;
    return strchr("$+<=>^`|~", (int)c) ? UCAT_SYMBOL : UCAT_PUNCT;
}

uint8_t ucat_flags(uint32_t cp)
{
    if (cp < 0x80)
        return ascii_flags(cp);
    if (cp >= 0x110000)
        return UCAT_UNASSIGNED;
    int lo = 0, hi = ucat_n_ranges - 1; /* the last range starting at or before cp */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (ucat_range_start[mid] <= cp)
            lo = mid;
        else
            hi = mid - 1;
    }
    return ucat_range_flags[lo];
}

int ucat_is_space(uint32_t cp)
{
    if (cp <= 0x20)
        return cp == 0x20 || (cp >= 0x09 && cp <= 0x0d);
    switch (cp) {
    case 0x85:
    case 0xa0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202f:
    case 0x205f:
    case 0x3000:
        return 1;
    default:
        return cp >= 0x2000 && cp <= 0x200a;
    }
}

/* em_read_file: reads in growing chunks, so pipes and /proc files work too. */
#include "common/file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

em_status em_read_file(const char *path, char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return EM_EIO;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    em_status st = buf ? EM_OK : EM_ENOMEM;
    while (st == EM_OK) {
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) {
            if (ferror(f))
                st = EM_EIO;
            break;
        }
        if (n + 1 == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                st = EM_ENOMEM;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    int saved = errno;
    fclose(f);
    errno = saved;
    if (st != EM_OK) {
        free(buf);
        return st;
    }
    buf[n] = 0;
    *data = buf;
    *len = n;
    return EM_OK;
}

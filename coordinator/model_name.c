/* The served model's name (see model_name.h). */
#include "coordinator/model_name.h"

#include <stdio.h>
#include <string.h>

void coord_model_name(const model *m, const char *path, char *out, size_t cap)
{
    const gguf_kv *kv = m && m->gguf ? gguf_find_kv(m->gguf, "general.name") : NULL;
    gguf_str s;
    if (kv && gguf_get_arr_str(m->gguf, kv, 0, &s) == EM_OK && s.len > 0 && s.len < 4096) {
        snprintf(out, cap, "%.*s", (int)s.len, s.data);
        return;
    }
    const char *base = path ? strrchr(path, '/') : NULL;
    base = base ? base + 1 : path ? path : "";
    size_t n = strlen(base);
    if (n > 5 && strcmp(base + n - 5, ".gguf") == 0) {
        n -= 5;
    }
    snprintf(out, cap, "%.*s", (int)n, base);
}

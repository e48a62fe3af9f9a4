/* Parser of tests/testutil/smollm2_goldens.txt (format in the file's header). */
#include "tests/testutil/smollm2_goldens.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_ids(char *s, int32_t *out, int *n)
{
    char *end;
    long cnt = strtol(s, &end, 10);
    if (end == s || cnt < 0 || cnt > SG_MAX_IDS)
        return 1;
    for (long i = 0; i < cnt; i++) {
        s = end;
        long v = strtol(s, &end, 10);
        if (end == s)
            return 1;
        out[i] = (int32_t)v;
    }
    *n = (int)cnt;
    return 0;
}

static void unescape(const char *s, char *out, size_t cap)
{
    size_t o = 0;
    for (; *s && *s != '\n' && o + 1 < cap; s++) {
        if (*s != '\\' || !s[1]) {
            out[o++] = *s;
            continue;
        }
        s++;
        if (*s == 'n')
            out[o++] = '\n';
        else if (*s == 't')
            out[o++] = '\t';
        else if (*s == 'x' && s[1] && s[2]) {
            char hx[3] = {s[1], s[2], 0};
            out[o++] = (char)strtol(hx, NULL, 16);
            s += 2;
        } else
            out[o++] = *s;
    }
    out[o] = 0;
}

static int parse_line(sg_record *r, char *line)
{
    char *sp = strchr(line, ' ');
    if (!sp)
        return strcmp(line, "end") != 0;
    *sp = 0;
    char *v = sp + 1;
    if (!strcmp(line, "prompt_text"))
        return 0;
    if (!strcmp(line, "prompt_ids"))
        return parse_ids(v, r->prompt_ids, &r->n_prompt);
    if (!strcmp(line, "greedy"))
        return parse_ids(v, r->greedy, &r->n_greedy);
    if (!strcmp(line, "stopped"))
        return sscanf(v, "%d", &r->stopped) != 1;
    if (!strcmp(line, "agree_steps"))
        return sscanf(v, "%d", &r->agree_steps) != 1;
    if (!strcmp(line, "prompt_dlogit"))
        return sscanf(v, "%f", &r->prompt_dlogit) != 1;
    if (!strcmp(line, "min_margin"))
        return sscanf(v, "%f", &r->min_margin) != 1;
    if (!strcmp(line, "text")) {
        unescape(v, r->text, sizeof r->text);
        return 0;
    }
    if (!strcmp(line, "top5")) {
        char *p = v;
        for (int i = 0; i < 5; i++) {
            int used = 0;
            if (sscanf(p, "%d:%f%n", &r->top5_id[i], &r->top5_logit[i], &used) != 2)
                return 1;
            p += used;
        }
        return 0;
    }
    return 0; /* margins and later additions: not needed here */
}

int sg_load(const char *path, sg_goldens *g)
{
    memset(g, 0, sizeof *g);
    FILE *f = fopen(path, "r");
    if (!f) {
        printf("FAIL: cannot open goldens %s\n", path);
        return 1;
    }
    char line[8192];
    sg_record *r = NULL;
    int bad = 0, ln = 0;
    while (!bad && fgets(line, sizeof line, f)) {
        ln++;
        line[strcspn(line, "\n")] = 0;
        if (!line[0] || line[0] == '#')
            continue;
        if (!strncmp(line, "golden ", 7)) {
            if (g->n == SG_MAX_RECORDS) {
                bad = 1;
                break;
            }
            r = &g->rec[g->n++];
            bad = sscanf(line + 7, "%63s %7s", r->name, r->mode) != 2;
        } else {
            bad = !r || parse_line(r, line);
        }
    }
    fclose(f);
    if (bad || g->n == 0) {
        printf("FAIL: goldens %s: malformed at line %d\n", path, ln);
        return 1;
    }
    return 0;
}

/* Replays corpus files through a fuzz target's entry points (the Bazel test of each target):
 * argv = files or folders (every regular file in them, sorted). Prints how many inputs ran;
 * fails on a folder or file that cannot be read or an empty corpus. A crash, a failed property
 * (abort) or a sanitizer report fails the test like any other. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/file.h"
#include "fuzz/fuzz.h"

static em_status run_file(const char *path)
{
    char *buf;
    size_t n;
    if (em_read_file(path, &buf, &n) != EM_OK) {
        fprintf(stderr, "cannot read %s\n", path);
        return EM_EIO;
    }
    /* an exact-size copy, so that ASan sees a read past the input's end */
    uint8_t *in = malloc(n ? n : 1);
    if (in == NULL) {
        free(buf);
        return EM_ENOMEM;
    }
    memcpy(in, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(in, n);
    free(in);
    return EM_OK;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every regular file of dir in name order; returns how many, RUN_ERROR on an error. */
#define RUN_ERROR (-1)
static int run_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "cannot open folder %s\n", dir);
        return RUN_ERROR;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int ran = 0;
    struct dirent *e;
    while (ran == 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(names, cap * sizeof *names);
            if (nn == NULL) {
                ran = RUN_ERROR;
                break;
            }
            names = nn;
        }
        size_t l = strlen(dir) + strlen(e->d_name) + 2;
        if ((names[n] = malloc(l)) == NULL) {
            ran = RUN_ERROR;
            break;
        }
        snprintf(names[n++], l, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (ran < 0) {
        fprintf(stderr, "out of memory listing %s\n", dir);
    } else if (n > 0) {
        qsort(names, n, sizeof *names, by_name);
    }
    for (size_t i = 0; i < n; i++) {
        struct stat sb;
        if (ran >= 0 && stat(names[i], &sb) == 0 && S_ISREG(sb.st_mode)) {
            ran = run_file(names[i]) == EM_OK ? ran + 1 : RUN_ERROR;
        }
        free(names[i]);
    }
    free(names);
    return ran;
}

int main(int argc, char **argv)
{
    LLVMFuzzerInitialize(&argc, &argv);
    int total = 0;
    for (int i = 1; i < argc; i++) {
        struct stat sb;
        int k = stat(argv[i], &sb) == 0 && S_ISDIR(sb.st_mode) ? run_dir(argv[i])
                : run_file(argv[i]) == EM_OK                   ? 1
                                                               : RUN_ERROR;
        if (k < 0) {
            return 1;
        }
        total += k;
    }
    printf("%s: %d inputs replayed\n", argv[0], total);
    return total > 0 ? 0 : 1;
}

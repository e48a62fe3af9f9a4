/* Logging: one formatted line per call, written atomically to stderr or a custom sink. */
#include "common/log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static em_log_level g_level = EM_LOG_INFO;
static char g_role[64] = "";
static em_log_sink g_sink;
static void *g_sink_user;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

void em_log_set_level(em_log_level lvl) { g_level = lvl; }
em_log_level em_log_get_level(void) { return g_level; }

void em_log_set_role(const char *role)
{
    snprintf(g_role, sizeof g_role, "%s", role ? role : "");
}

void em_log_set_sink(em_log_sink sink, void *user)
{
    pthread_mutex_lock(&g_mu);
    g_sink = sink;
    g_sink_user = user;
    pthread_mutex_unlock(&g_mu);
}

void em_log(em_log_level lvl, const char *func, const char *fmt, ...)
{
    static const char tag[] = "DIWE";
    char line[1024];
    int n = snprintf(line, sizeof line, "[%c] %s%s%s: ", tag[lvl & 3], g_role, g_role[0] ? " " : "",
                     func);
    if (n < 0 || n >= (int)sizeof line) n = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&g_mu);
    if (g_sink) {
        g_sink(lvl, line, g_sink_user);
    } else {
        fprintf(stderr, "%s\n", line);
    }
    pthread_mutex_unlock(&g_mu);
}

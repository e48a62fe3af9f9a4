/* Logging: one formatted line per call, written atomically to stderr or a custom sink. A line
 * carries the UTC time with milliseconds, the level, the role and pid, and the function:
 *   2026-01-02T03:04:05.678Z [I] coordinator[4242] main: text
 * or, in JSON-lines format, one object per line:
 *   {"ts":"2026-01-02T03:04:05.678Z","level":"info","role":"coordinator","pid":4242,
 *    "func":"main","msg":"text"} */
#include "common/log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static em_log_level g_level = EM_LOG_INFO;
static em_log_format g_format = EM_LOG_FORMAT_TEXT;
static char g_role[64] = "";
static em_log_sink g_sink;
static void *g_sink_user;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

void em_log_set_level(em_log_level lvl)
{
    g_level = lvl;
}
em_log_level em_log_get_level(void)
{
    return g_level;
}
void em_log_set_format(em_log_format f)
{
    g_format = f;
}

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

/* "2026-01-02T03:04:05.678Z" */
static void timestamp(char *out, size_t cap)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, cap - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

/* s as the inside of a JSON string (quotes, backslashes and control characters escaped). */
static size_t json_escape(const char *s, char *out, size_t cap)
{
    size_t n = 0;
    for (; *s && n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    out[n] = 0;
    return n;
}

static void emit(em_log_level lvl, const char *func, const char *msg)
{
    static const char tag[] = "DIWE";
    static const char *const names[] = {"debug", "info", "warn", "error"};
    char ts[40], line[2560];
    timestamp(ts, sizeof ts);
    if (g_format == EM_LOG_FORMAT_JSON) {
        char emsg[2048], efunc[128], erole[128];
        json_escape(msg, emsg, sizeof emsg);
        json_escape(func, efunc, sizeof efunc);
        json_escape(g_role, erole, sizeof erole);
        snprintf(line, sizeof line,
                 "{\"ts\":\"%s\",\"level\":\"%s\",\"role\":\"%s\",\"pid\":%d,\"func\":\"%s\","
                 "\"msg\":\"%s\"}",
                 ts, names[lvl & 3], erole, (int)getpid(), efunc, emsg);
    } else {
        snprintf(line, sizeof line, "%s [%c] %s[%d] %s: %s", ts, tag[lvl & 3],
                 g_role[0] ? g_role : "emserve", (int)getpid(), func, msg);
    }
    pthread_mutex_lock(&g_mu);
    if (g_sink) {
        g_sink(lvl, line, g_sink_user);
    } else {
        fprintf(stderr, "%s\n", line);
    }
    pthread_mutex_unlock(&g_mu);
}

void em_log(em_log_level lvl, const char *func, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    emit(lvl, func, msg);
}

void em_log_message(em_log_level lvl, const char *func, const char *msg)
{
    if (lvl >= g_level) {
        emit(lvl, func, msg);
    }
}

em_status em_log_format_parse(const char *name, em_log_format *out)
{
    if (strcmp(name, "text") == 0 || strcmp(name, "json") == 0) {
        *out = name[0] == 'j' ? EM_LOG_FORMAT_JSON : EM_LOG_FORMAT_TEXT;
        return EM_OK;
    }
    return EM_EINVAL;
}

/* Logging through one module: level check before formatting, replaceable sink for tests.
 * Lines look like "2026-01-02T03:04:05.678Z [I] worker 1/2[4242] engine_forward: ..." (UTC,
 * role, pid, function), or one JSON object per line (em_log_set_format). */
#pragma once
#include <stdarg.h>

#include "common/status.h"

typedef enum { EM_LOG_DEBUG = 0, EM_LOG_INFO = 1, EM_LOG_WARN = 2, EM_LOG_ERROR = 3 } em_log_level;

typedef enum { EM_LOG_FORMAT_TEXT = 0, EM_LOG_FORMAT_JSON } em_log_format;

typedef void (*em_log_sink)(em_log_level lvl, const char *line, void *user);

/* Global settings; call before starting threads. role e.g. "coordinator" or "worker 1/2". */
void em_log_set_level(em_log_level lvl);
void em_log_set_role(const char *role);
void em_log_set_sink(em_log_sink sink, void *user); /* NULL restores stderr */
em_log_level em_log_get_level(void);
void em_log_set_format(em_log_format f);
/* "text" or "json"; EM_EINVAL otherwise. */
em_status em_log_format_parse(const char *name, em_log_format *out);

void em_log(em_log_level lvl, const char *func, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A message formatted elsewhere (another library's log), when lvl passes the level. */
void em_log_message(em_log_level lvl, const char *func, const char *msg);

#define EM_LOG_DEBUG(...)                                \
    do {                                                 \
        if (em_log_get_level() <= EM_LOG_DEBUG)          \
            em_log(EM_LOG_DEBUG, __func__, __VA_ARGS__); \
    } while (0)
#define EM_LOG_INFO(...)                                \
    do {                                                \
        if (em_log_get_level() <= EM_LOG_INFO)          \
            em_log(EM_LOG_INFO, __func__, __VA_ARGS__); \
    } while (0)
#define EM_LOG_WARN(...)  em_log(EM_LOG_WARN, __func__, __VA_ARGS__)
#define EM_LOG_ERROR(...) em_log(EM_LOG_ERROR, __func__, __VA_ARGS__)

/* Logging through one module: level check before formatting, replaceable sink for tests.
 * Lines look like "[I] worker 1/2 engine_forward: ...". */
#pragma once
#include <stdarg.h>

typedef enum { EM_LOG_DEBUG = 0, EM_LOG_INFO = 1, EM_LOG_WARN = 2, EM_LOG_ERROR = 3 } em_log_level;

typedef void (*em_log_sink)(em_log_level lvl, const char *line, void *user);

/* Global settings; call before starting threads. role e.g. "coordinator" or "worker 1/2". */
void em_log_set_level(em_log_level lvl);
void em_log_set_role(const char *role);
void em_log_set_sink(em_log_sink sink, void *user); /* NULL restores stderr */
em_log_level em_log_get_level(void);

void em_log(em_log_level lvl, const char *func, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define EM_LOG_DEBUG(...) do { if (em_log_get_level() <= EM_LOG_DEBUG) em_log(EM_LOG_DEBUG, __func__, __VA_ARGS__); } while (0)
#define EM_LOG_INFO(...) do { if (em_log_get_level() <= EM_LOG_INFO) em_log(EM_LOG_INFO, __func__, __VA_ARGS__); } while (0)
#define EM_LOG_WARN(...) em_log(EM_LOG_WARN, __func__, __VA_ARGS__)
#define EM_LOG_ERROR(...) em_log(EM_LOG_ERROR, __func__, __VA_ARGS__)

/* Histogram buckets and the names of finish and error reasons (see sched_stats.h). */
#include "coordinator/sched_stats.h"

#include <string.h>

const double coord_time_buckets_s[COORD_HIST_BUCKETS] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                         0.5,   1,     2.5,  5,     10,   30,  60};
const double coord_token_buckets[COORD_HIST_BUCKETS] = {1,   2,   5,    10,   20,   50,    100,
                                                        200, 500, 1000, 2000, 5000, 10000, 20000};

const char *const coord_finish_name[COORD_FIN_COUNT] = {"stop", "length", "abort"};

const char *const coord_reject_name[COORD_REJ_COUNT] = {"invalid_argument", "queue_full",
                                                        "kv_memory",        "out_of_memory",
                                                        "unavailable",      "deadline_exceeded"};

void coord_hist_add(coord_hist *h, const double *bounds, double v)
{
    int b = 0;
    while (b < COORD_HIST_BUCKETS && v > bounds[b]) {
        b++;
    }
    h->count[b]++;
    h->sum += v;
    h->n++;
}

coord_finish coord_finish_of(const char *reason)
{
    for (int f = 0; f < COORD_FIN_COUNT; f++) {
        if (reason && strcmp(reason, coord_finish_name[f]) == 0) {
            return (coord_finish)f;
        }
    }
    return COORD_FIN_STOP;
}

/* What the scheduler tests submit and collect: requests with a synthetic prompt, greedy, a
 * fixed number of tokens and "k=v k=v" KV settings, and a board their sink writes to (the
 * outcome of each request, and how many the scheduler has released). */
#pragma once
#include <pthread.h>
#include <stdint.h>

#include "common/status.h"
#include "coordinator/sched.h"
#include "model/model.h"

#define SB_MAX_REQ 16
#define SB_MAX_IDS 256

typedef struct sb_result {
    int done, ok, finished; /* released; completed; completed or failed */
    em_status status;       /* of a failure */
    char message[300];
    int32_t ids[SB_MAX_IDS]; /* the first SB_MAX_IDS generated ids */
    int n_ids;
} sb_result;

typedef struct sb_board {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int released;
    sb_result res[SB_MAX_REQ];
} sb_board;

/* A request's sink_user: its board and index. */
typedef struct sb_user {
    sb_board *b;
    int i;
} sb_user;

void sb_board_init(sb_board *b);
/* Blocks until n requests have been released. */
void sb_board_wait(sb_board *b, int n);

/* Adds the "k=v k=v" settings to q (its config and its key/value lists); REQUIREs each. */
void sb_set_kv(coord_req *q, const char *kv);

/* Request i ("req-i"): n_prompt synthetic ids (a function of i), greedy, exactly gen tokens
 * (EOS ignored), KV settings kv, reporting to u. */
coord_req *sb_make_req(const model *m, int i, int n_prompt, int gen, const char *kv, sb_user *u);

/* Private to the worker group (group.c: placement, formation, liveness; group_step.c: the step
 * fan-out, reply validation and progress deadlines): the group struct and the helpers the two
 * files share. */
#pragma once
#include <pthread.h>
#include <stdint.h>

#include <grpc/grpc.h>

#include "coll/coll.h"
#include "coordinator/group.h"
#include "rpc/rpc_auth.h"
#include "rpc/rpc_util.h"

typedef struct wlink {
    coord_placement pl;
    char addr[256];
    int local;
    grpc_channel *ch;
    int64_t pid, weight_bytes;
    char token[RPC_SECRET_MAX + 1]; /* this rank's group token (rpc_auth.h), new each formation */
    int joined;
    int hello_timeouts; /* Hello calls that ran into their deadline in a row */
} wlink;

struct coord_group {
    int world, n_vocab;
    model_hparams hp;
    wlink w[COORD_MAX_WORKERS];
    coord_spawner *spawner;
    coord_group_opts o;
    char model_path[1024], store_adv[300];
    char secret[RPC_SECRET_MAX + 1]; /* carried by every internal call */
    rpc_args chargs;                 /* worker channels: replies capped by the largest step */
    char tls_name[256];              /* the workers' certificate name (chargs points here) */
    coll_store_server *store;
    grpc_completion_queue *cq;
    pthread_mutex_t mu; /* guards serving, generation, w[].addr/joined/pid for snapshots */
    int serving;
    int64_t generation;
    char lost_reason[512];
    double next_form_at, last_ping;
    uint64_t step_id;
    double ms_per_token; /* slowest recent step time per token (decays 1 % a step) */
    float *logits;
    size_t cap_logits;
    int32_t *slots;
    int64_t *entries;
    int64_t *kv_bytes;       /* [cap_slots][world] KV bytes worker r holds per slot (KV budget) */
    int64_t *kv_quant;       /* [cap_slots][world] the part of kv_bytes in quantized stores */
    coord_kv_counts *counts; /* [cap_slots] compression since the last step, all workers */
    int64_t kv_peak[COORD_MAX_WORKERS];
    int cap_slots;
};

/* Workers whose call ran into its deadline (timed_out[r] != 0) are declared hung: local ones
 * are killed through the spawner (which restarts them) - only the stopped ones (SIGSTOP,
 * ptrace) when there are any, since their peers merely wait on them in an all-reduce; remote
 * ones can only be reported. what names the call ("step", "Hello"). */
void coord__group_kill_hung(coord_group *g, const int *timed_out, const char *what,
                            long deadline_ms);

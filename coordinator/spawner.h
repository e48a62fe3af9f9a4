/* Local worker processes, started by a small spawner process that the coordinator forks BEFORE
 * grpc_init (gRPC forbids fork after init). The spawner is single-threaded and never blocks on
 * one worker: it fork/execs the workers, reads the port each one reports (a worker that has not
 * reported within 30 s is killed), reaps dead ones and restarts them after a delay that doubles
 * (up to 30 s) while they keep dying within 10 s of starting, and kills them all when the
 * coordinator goes away. Events come back over a socketpair; its end closing tells the
 * coordinator that the spawner died (coord_spawner_lost). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

typedef struct coord_spawner coord_spawner;

typedef struct coord_spawner_opts {
    const char *worker_bin;
    const char *model_path;
    int n_workers;
    int n_threads;              /* --threads for each worker */
    int respawn_delay_ms;       /* wait before restarting a dead worker; < 0 = never restart */
    const char *cluster_secret; /* handed to each worker through an inherited pipe (not argv) */
    const char *tls_cert, *tls_key, *tls_ca; /* internal mutual TLS files, passed on (NULL: off) */
} coord_spawner_opts;

typedef enum { COORD_SPAWN_UP, COORD_SPAWN_DOWN } coord_spawn_kind;

typedef struct coord_spawn_event {
    coord_spawn_kind kind;
    int rank;
    int64_t pid;
    int port;   /* UP: the worker's gRPC port on 127.0.0.1 */
    int status; /* DOWN: waitpid status */
} coord_spawn_event;

/* Forks the spawner (call before grpc_init and before starting threads). */
em_status coord_spawner_start(const coord_spawner_opts *o, coord_spawner **out);
/* Non-blocking: 1 and *ev filled when an event is pending, 0 otherwise. */
int coord_spawner_poll(coord_spawner *s, coord_spawn_event *ev);
/* 1 once the spawner is known to be gone (a poll saw its end close); thread-safe. It cannot be
 * restarted (gRPC forbids fork after init): the coordinator exits non-zero so that its
 * supervisor restarts the whole service. */
int coord_spawner_lost(coord_spawner *s);
/* Asks the spawner to kill worker `rank` now (tests, operators); it restarts per its delay. */
void coord_spawner_kill(coord_spawner *s, int rank);
/* Stops every worker and the spawner; waits for it. NULL ok. */
void coord_spawner_stop(coord_spawner *s);

/* Finds emserve_worker: flag value, $EMSERVE_WORKER_BIN, next to /proc/self/exe, or
 * ../worker/ beside it (the bazel-bin layout). Writes the path to out; EM_EINVAL when the flag
 * or $EMSERVE_WORKER_BIN names no executable, EM_EIO when none is found. */
em_status coord_spawner_find_worker(const char *flag, char *out, size_t len);

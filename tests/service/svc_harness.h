/* Test harness: starts //coordinator:emserve (with its local workers) as a child process on a
 * free port, waits for its "listening on HOST:PORT" line, and stops it. Uses posix_spawn, so it
 * may be called after grpc_init. Also: the model path and a golden generation through a client
 * (the goldens themselves: tests/testutil/goldens.h). */
#pragma once
#include <stdint.h>
#include <sys/types.h>

#include "common/status.h"
#include "coordinator/client.h"
#include "tests/testutil/goldens.h"

typedef struct svc {
    pid_t pid;
    char addr[64];
} svc;

/* The cluster secret of the tests and a file (mode 0600, in the test's tmpdir) holding it.
 * Workers started by hand and coordinators over them get --cluster-secret-file this file; a
 * coordinator with local workers makes its own secret unless the test passes the file. */
const char *svc_secret(void);
const char *svc_secret_file(void);
#define SVC_NO_PID ((pid_t)-1) /* what the pid look-ups return when there is no such process */

/* pid of local worker `rank` of the coordinator s (a grandchild: coordinator -> spawner ->
 * worker, named "worker R/N" on its command line); SVC_NO_PID when there is none. */
pid_t svc_local_worker_pid(const svc *s, int rank);
/* pid of the coordinator's spawner (its only child), SVC_NO_PID when there is none. */
pid_t svc_spawner_pid(const svc *s);
/* Path of the test model (exits the test, loudly, when absent). */
const char *svc_model(void);
/* Starts emserve with --workers n and extra flags (NULL-terminated, may be NULL). EM_EIO when
 * it cannot be spawned, EM_EUNAVAILABLE when it printed no "listening on" line within 90 s
 * (then it is stopped); the reason is printed. */
em_status svc_start(svc *s, int n_workers, const char *const *extra);
/* The same with another model file. */
em_status svc_start_model(svc *s, const char *model, int n_workers, const char *const *extra);
/* A worker started by hand: emserve_worker --listen listen (e.g. 127.0.0.1:0). */
em_status svc_start_worker(svc *s, const char *listen);
/* A coordinator over hand-started workers (--worker-addr for each). */
em_status svc_start_coordinator(svc *s, const char *const *worker_addrs, int n,
                                const char *const *extra);
/* Any program that prints "listening on HOST:PORT" (argv[0] from svc_bin, NULL-terminated). */
em_status svc_spawn(svc *s, const char *const *argv);
/* Path of a binary of this workspace in the test's runfiles ("tests/service/fake_worker"). */
void svc_bin(const char *rel, char *out, size_t len);
/* SIGTERM, then waits (SIGKILL after 10 s). Returns the exit status from waitpid. Processes
 * started by this harness and still running when the test exits are stopped this way. */
int svc_stop(svc *s);
/* 1 while the process is alive. */
int svc_alive(const svc *s);

/* Health/Check through cl as a word: "SERVING", "NOT_SERVING", or the name of the failed
 * RPC's em_status ("EM_EUNAVAILABLE"). */
const char *svc_health(coord_client *cl, long timeout_ms);

/* Greedy generation of n_tokens (<= 60) from tu_goldens[0] through cl: 1 when the status is OK
 * and the ids are the golden ones; otherwise prints "FAIL golden generation <what>: ..." and
 * returns 0. */
int svc_golden_ok(coord_client *cl, int n_tokens, const char *what);

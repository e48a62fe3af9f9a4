/* Internals of //eval:kv_eval: sampled texts, retrieval cases, per-layer attention fidelity,
 * CSV/plot output. Each experiment writes one CSV under the output directory. */
#pragma once
#include <stdint.h>
#include <stdio.h>

#include "ems/config.h"
#include "engine/engine.h"
#include "model/model.h"
#include "model/tokenizer.h"

/* One named policy configuration of the harness. */
typedef struct ev_policy {
    char name[48]; /* e.g. "ems", "h2o+int4", "ems(zero_class=0)" */
    ems_config cfg;
} ev_policy;

/* Builds a policy from "method" and extra key=value settings (NULL-terminated); budget B.
 * A setting ems_config rejects: its status, after a message on stderr. */
em_status ev_policy_make(ev_policy *p, const char *name, const char *method, int B,
                         const char *const *kv);

/* Samples a text of n tokens from the model with the full cache (temperature 1, seeded):
 * starts with BOS; when EOS is drawn, EOS then BOS are appended and sampling continues. */
em_status ev_sample_text(engine *e, int n, uint64_t seed, int32_t *ids);

/* Retrieval: a name given early must be reproduced after a cue. */
typedef struct ev_rcase {
    int32_t ids[600];
    int n_prompt; /* ids[0..n_prompt) = prompt (ends with the cue) */
    int n_name;   /* ids[n_prompt..n_prompt+n_name) = the name's tokens */
    int distance; /* tokens between the end of the name's introduction and the cue */
    int dist_idx; /* index into the requested distances */
    char name[16];
} ev_rcase;
/* Up to cap cases, 16 names per distance; a case whose name does not tokenize as a clean
 * suffix of its prompt is left out. *n_out: the number made. A tokenizer failure: its status. */
em_status ev_retrieval_cases(const tokenizer *tok, const int *distances, int n_dist, ev_rcase *out,
                             int cap, int *n_out);
/* 1 when, teacher-forced, the greedy token equals each name token. stream = 1: the prompt is
 * fed token by token with compression as it streams; 0: one prefill chunk, then prefill-end
 * compression. */
em_status ev_retrieval_run(engine *e, const ems_config *cfg, const ev_rcase *rc, int stream,
                           int *ok);

/* Per-layer attention-output relative error of a compressed cache against the full cache, with
 * the queries of the full model: streams ids through two caches in lockstep and probes every
 * `every` tokens from `first`. err[l] = sqrt(sum |o_c - o_f|^2 / sum |o_f|^2) over probes. */
em_status ev_fidelity(engine *e, const model *m, const ems_config *cfg, const int32_t *ids, int n,
                      int first, int every, double *err, double *logit_check);

/* Runs gnuplot on a script (no-op with a warning when gnuplot is missing). */
void ev_gnuplot(const char *dir, const char *script);

/* Prompts of the public gRPC API: chat messages of a request to native messages, and the
 * Tokenize RPC (the ids Generate would use). The tokenization itself is prompt.h's. Errors are
 * EM_EINVAL with "field: reason" in err. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "coordinator/chat_template.h"
#include "coordinator/prompt.h"
#include "proto/c/emserve/v1/emserve.pb-c.h"

/* The n protobuf messages as native messages (malloc'd array, strings borrowed from m); NULL
 * when n is 0 or on allocation failure. */
coord_chat_msg *coord_rpc_chat_msgs(Emserve__V1__ChatMessage *const *m, size_t n);

/* Tokenize: *ids (malloc'd, *n of them; not limited by the context) and, when messages were
 * given, the rendered prompt in *prompt (malloc'd; NULL otherwise). */
em_status coord_rpc_tokenize(const Emserve__V1__TokenizeRequest *rq, const coord_prompt_ctx *pc,
                             int32_t **ids, int *n, char **prompt, char *err, size_t errlen);

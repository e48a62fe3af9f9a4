/* Chat templates: recognise a model's chat-template family from the Jinja source in its GGUF
 * (`tokenizer.chat_template`) by the substring heuristics llama.cpp uses (llm_chat_detect_template,
 * same order), and render (role, content) messages into prompt text with the special-token
 * strings in it ("<|im_start|>user\n...<|im_end|>\n"), as llama.cpp's built-in renderer does.
 * Not a Jinja interpreter: each family is rendered by code; the one thing read out of the
 * source is the default system message a ChatML template inserts when the conversation does not
 * start with one (SmolLM2, Qwen2). Pure C: no gRPC, no tokenizer. */
#pragma once
#include <stddef.h>

#include "common/status.h"

typedef enum {
    COORD_CHAT_NONE = 0, /* no template, or one of a family not supported here */
    COORD_CHAT_CHATML,
    COORD_CHAT_LLAMA2,           /* [INST] ... [/INST], system message folded into the first turn */
    COORD_CHAT_LLAMA2_SYS,       /* ... with <<SYS>> */
    COORD_CHAT_LLAMA2_SYS_BOS,   /* ... and <s> before every later [INST] */
    COORD_CHAT_LLAMA2_SYS_STRIP, /* ... and contents trimmed */
    COORD_CHAT_MISTRAL_V1,
    COORD_CHAT_MISTRAL_V3,
    COORD_CHAT_MISTRAL_V3_TEKKEN,
    COORD_CHAT_MISTRAL_V7,
    COORD_CHAT_MISTRAL_V7_TEKKEN,
    COORD_CHAT_LLAMA3,
    COORD_CHAT_GEMMA,
    COORD_CHAT_PHI3,
    COORD_CHAT_PHI4,
    COORD_CHAT_FAMILY_COUNT
} coord_chat_family;

typedef struct coord_chat_template {
    coord_chat_family family;
    char *default_system; /* ChatML only: the system message inserted before a conversation
                           * whose first message is not a system message (owned; NULL = none) */
} coord_chat_template;

/* One message: role "system", "user" or "assistant"; content NUL-terminated (both borrowed). */
typedef struct coord_chat_msg {
    const char *role;
    const char *content;
} coord_chat_msg;

#define COORD_CHAT_MAX_MESSAGES 1024

/* "chatml", "llama2", ..., "llama3", "gemma", "phi3", "phi4" (llama.cpp's names); "" for
 * COORD_CHAT_NONE. Never NULL. */
const char *coord_chat_family_name(coord_chat_family f);

/* Recognises the family of a Jinja source (src may be NULL: no template); a source that is
 * exactly a family name ("chatml") selects it. An unknown template gives COORD_CHAT_NONE, not an
 * error. Fails only with EM_ENOMEM. Free out with coord_chat_template_free. */
em_status coord_chat_template_detect(const char *src, size_t len, coord_chat_template *out);
void coord_chat_template_free(coord_chat_template *t); /* NULL ok; t itself is not freed */

/* Checks a conversation: 1..COORD_CHAT_MAX_MESSAGES messages, each with a known role and a
 * content. EM_EINVAL with "messages...: reason" (naming the index and the role) in err. */
em_status coord_chat_validate(const coord_chat_msg *msgs, int n, char *err, size_t errlen);

/* Renders a conversation (validated first) into *out (malloc'd, NUL-terminated; *out_len its
 * length), ending with the assistant's opening when add_generation_prompt is set and the family
 * has one. EM_EINVAL "messages: model has no supported chat template" for COORD_CHAT_NONE. */
em_status coord_chat_render(const coord_chat_template *t, const coord_chat_msg *msgs, int n,
                            int add_generation_prompt, char **out, size_t *out_len, char *err,
                            size_t errlen);

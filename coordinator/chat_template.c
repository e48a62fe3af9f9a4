/* Chat-template detection and rendering (see chat_template.h). The detection order and the
 * rendering rules follow llama.cpp's src/llama-chat.cpp (llm_chat_detect_template and
 * llm_chat_apply_template); families it knows that we do not render are recognised all the same,
 * so that their templates are reported as unsupported instead of falling through to a family
 * checked later in the chain. */
#define _GNU_SOURCE /* memmem */
#include "coordinator/chat_template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const k_names[COORD_CHAT_FAMILY_COUNT] = {
    [COORD_CHAT_NONE] = "",
    [COORD_CHAT_CHATML] = "chatml",
    [COORD_CHAT_LLAMA2] = "llama2",
    [COORD_CHAT_LLAMA2_SYS] = "llama2-sys",
    [COORD_CHAT_LLAMA2_SYS_BOS] = "llama2-sys-bos",
    [COORD_CHAT_LLAMA2_SYS_STRIP] = "llama2-sys-strip",
    [COORD_CHAT_MISTRAL_V1] = "mistral-v1",
    [COORD_CHAT_MISTRAL_V3] = "mistral-v3",
    [COORD_CHAT_MISTRAL_V3_TEKKEN] = "mistral-v3-tekken",
    [COORD_CHAT_MISTRAL_V7] = "mistral-v7",
    [COORD_CHAT_MISTRAL_V7_TEKKEN] = "mistral-v7-tekken",
    [COORD_CHAT_LLAMA3] = "llama3",
    [COORD_CHAT_GEMMA] = "gemma",
    [COORD_CHAT_PHI3] = "phi3",
    [COORD_CHAT_PHI4] = "phi4",
};

const char *coord_chat_family_name(coord_chat_family f)
{
    return (unsigned)f < COORD_CHAT_FAMILY_COUNT ? k_names[f] : "";
}

/* ---- detection ------------------------------------------------------------------------------ */

typedef struct src_text {
    const char *p;
    size_t n;
} src_text;

static int has(src_text s, const char *needle)
{
    return memmem(s.p, s.n, needle, strlen(needle)) != NULL;
}

/* llama.cpp's branch for templates with [INST] (or starting with "mistral"). */
static coord_chat_family detect_inst(src_text s)
{
    if (has(s, "[SYSTEM_PROMPT]")) {
        return COORD_CHAT_MISTRAL_V7;
    }
    if (has(s, "' [INST] ' + system_message") || has(s, "[AVAILABLE_TOOLS]")) {
        if (has(s, " [INST]")) {
            return COORD_CHAT_MISTRAL_V1;
        }
        return has(s, "\"[INST]\"") ? COORD_CHAT_MISTRAL_V3_TEKKEN : COORD_CHAT_MISTRAL_V3;
    }
    if (has(s, "content.strip()")) {
        return COORD_CHAT_LLAMA2_SYS_STRIP;
    }
    if (has(s, "bos_token + '[INST]")) {
        return COORD_CHAT_LLAMA2_SYS_BOS;
    }
    return has(s, "<<SYS>>") ? COORD_CHAT_LLAMA2_SYS : COORD_CHAT_LLAMA2;
}

/* The rest of llama.cpp's chain, in its order, up to the last family we render (Llama-3). A row
 * matches when both needles occur (b NULL: a alone); NONE rows are families we do not render. */
static const struct {
    const char *a, *b;
    coord_chat_family f;
} k_chain[] = {
    {"<|assistant|>", "<|end|>", COORD_CHAT_PHI3},
    {"[gMASK]<sop>", NULL, COORD_CHAT_NONE},        /* ChatGLM4 */
    {"<|assistant|>", "<|user|>", COORD_CHAT_NONE}, /* Falcon3, GLMEdge, EXAONE */
    {"<|{{ item['role'] }}|>", "<|begin_of_image|>", COORD_CHAT_NONE}, /* GLMEdge */
    {"<|user|>", "<|endoftext|>", COORD_CHAT_NONE},                    /* Zephyr */
    {"bos_token + message['role']", NULL, COORD_CHAT_NONE},            /* Monarch */
    {"<start_of_turn>", NULL, COORD_CHAT_GEMMA},
    {"'\\n\\nAssistant: ' + eos_token", NULL, COORD_CHAT_NONE},     /* Orion */
    {"GPT4 Correct ", NULL, COORD_CHAT_NONE},                       /* OpenChat */
    {"USER: ", "ASSISTANT: ", COORD_CHAT_NONE},                     /* Vicuna */
    {"### Instruction:", "<|EOT|>", COORD_CHAT_NONE},               /* DeepSeek coder */
    {"<|START_OF_TURN_TOKEN|>", "<|USER_TOKEN|>", COORD_CHAT_NONE}, /* Command-R */
    {"<|start_header_id|>", "<|end_header_id|>", COORD_CHAT_LLAMA3},
};

static coord_chat_family detect_family(src_text s)
{
    for (int f = 1; f < COORD_CHAT_FAMILY_COUNT; f++) {
        if (s.n == strlen(k_names[f]) && memcmp(s.p, k_names[f], s.n) == 0) {
            return (coord_chat_family)f;
        }
    }
    if (has(s, "<|im_start|>")) {
        if (has(s, "<|im_sep|>")) {
            return COORD_CHAT_PHI4;
        }
        /* SmolVLM uses <|im_start|> but is not ChatML */
        return has(s, "<end_of_utterance>") ? COORD_CHAT_NONE : COORD_CHAT_CHATML;
    }
    if ((s.n >= 7 && memcmp(s.p, "mistral", 7) == 0) || has(s, "[INST]")) {
        return detect_inst(s);
    }
    for (size_t i = 0; i < sizeof k_chain / sizeof k_chain[0]; i++) {
        if (has(s, k_chain[i].a) && (k_chain[i].b == NULL || has(s, k_chain[i].b))) {
            return k_chain[i].f;
        }
    }
    return COORD_CHAT_NONE;
}

/* Decodes the Jinja string literal whose opening quote is at q (escapes \n \t \\ \' \"; others
 * kept as written) into a new string; NULL when it is not closed (or out of memory). */
static char *jinja_literal(const char *q, const char *end)
{
    char quote = *q, *out = malloc((size_t)(end - q) + 1);
    size_t n = 0;
    if (out == NULL) {
        return NULL;
    }
    for (const char *p = q + 1; p < end; p++) {
        if (*p == quote) {
            out[n] = 0;
            return out;
        }
        if (*p == '\\' && p + 1 < end) {
            char e = *++p;
            if (e == 'n' || e == 't') {
                out[n++] = e == 'n' ? '\n' : '\t';
            } else if (e == '\\' || e == '\'' || e == '"') {
                out[n++] = e;
            } else {
                out[n++] = '\\';
                out[n++] = e;
            }
            continue;
        }
        out[n++] = *p;
    }
    free(out);
    return NULL;
}

/* A ChatML template that tests messages[0]'s role and holds one complete literal
 * '<|im_start|>system\n<text><|im_end|>\n' inserts <text> before a conversation that does not
 * start with a system message (SmolLM2, Qwen2). Returns the text (owned) or NULL. */
static char *chatml_default_system(src_text s)
{
    static const char head[] = "<|im_start|>system\n", tail[] = "<|im_end|>\n";
    if (!has(s, "messages[0]['role']") && !has(s, "messages[0][\"role\"]") &&
        !has(s, "messages[0].role")) {
        return NULL;
    }
    const char *end = s.p + s.n;
    for (const char *p = s.p + 1; p < end; p++) {
        p = memmem(p, (size_t)(end - p), "<|im_start|>system", 18);
        if (p == NULL) {
            return NULL;
        }
        if (p[-1] != '\'' && p[-1] != '"') {
            continue;
        }
        char *lit = jinja_literal(p - 1, end);
        size_t n = lit ? strlen(lit) : 0, hn = sizeof head - 1, tn = sizeof tail - 1;
        if (lit && n > hn + tn && memcmp(lit, head, hn) == 0 &&
            memcmp(lit + n - tn, tail, tn) == 0 && strstr(lit + hn, "<|im_") == lit + n - tn) {
            memmove(lit, lit + hn, n - hn - tn);
            lit[n - hn - tn] = 0;
            return lit;
        }
        free(lit);
    }
    return NULL;
}

em_status coord_chat_template_detect(const char *src, size_t len, coord_chat_template *out)
{
    memset(out, 0, sizeof *out);
    if (src == NULL || len == 0) {
        return EM_OK;
    }
    src_text s = {src, len};
    out->family = detect_family(s);
    if (out->family == COORD_CHAT_CHATML) {
        out->default_system = chatml_default_system(s);
    }
    return EM_OK;
}

void coord_chat_template_free(coord_chat_template *t)
{
    if (t) {
        free(t->default_system);
        memset(t, 0, sizeof *t);
    }
}

/* ---- validation ------------------------------------------------------------------------------ */

static int role_known(const char *r)
{
    return strcmp(r, "system") == 0 || strcmp(r, "user") == 0 || strcmp(r, "assistant") == 0;
}

em_status coord_chat_validate(const coord_chat_msg *msgs, int n, char *err, size_t errlen)
{
    if (n < 1) {
        snprintf(err, errlen, "messages: empty (give at least one message)");
        return EM_EINVAL;
    }
    if (n > COORD_CHAT_MAX_MESSAGES) {
        snprintf(err, errlen, "messages: %d messages, at most %d", n, COORD_CHAT_MAX_MESSAGES);
        return EM_EINVAL;
    }
    for (int i = 0; i < n; i++) {
        const char *r = msgs[i].role;
        if (r == NULL || r[0] == 0) {
            snprintf(err, errlen, "messages[%d].role: empty (want system, user or assistant)", i);
            return EM_EINVAL;
        }
        if (!role_known(r)) {
            snprintf(err, errlen,
                     "messages[%d].role: unknown role '%.40s' (want system, user or assistant)", i,
                     r);
            return EM_EINVAL;
        }
        if (msgs[i].content == NULL) {
            snprintf(err, errlen, "messages[%d].content: missing", i);
            return EM_EINVAL;
        }
    }
    return EM_OK;
}

/* ---- rendering ------------------------------------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void put_n(sbuf *b, const char *s, size_t n)
{
    if (b->oom) {
        return;
    }
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void put(sbuf *b, const char *s)
{
    put_n(b, s, strlen(s));
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* s without leading and trailing ASCII whitespace (llama.cpp's trim). */
static void put_trim(sbuf *b, const char *s)
{
    size_t n = strlen(s);
    while (n > 0 && is_space(*s)) {
        s++;
        n--;
    }
    while (n > 0 && is_space(s[n - 1])) {
        n--;
    }
    put_n(b, s, n);
}

static int is_role(const coord_chat_msg *m, const char *r)
{
    return strcmp(m->role, r) == 0;
}

static void render_chatml(const coord_chat_template *t, const coord_chat_msg *m, int n, int gen,
                          sbuf *b)
{
    if (t->default_system && !is_role(&m[0], "system")) {
        put(b, "<|im_start|>system\n");
        put(b, t->default_system);
        put(b, "<|im_end|>\n");
    }
    for (int i = 0; i < n; i++) {
        put(b, "<|im_start|>");
        put(b, m[i].role);
        put(b, "\n");
        put(b, m[i].content);
        put(b, "<|im_end|>\n");
    }
    if (gen) {
        put(b, "<|im_start|>assistant\n");
    }
}

/* Llama-2 and its variants; there is no generation prompt (the prompt ends with [/INST]). */
static void render_llama2(coord_chat_family f, const coord_chat_msg *m, int n, sbuf *b)
{
    int sys_tags = f != COORD_CHAT_LLAMA2, bos_inside = f == COORD_CHAT_LLAMA2_SYS_BOS;
    int strip = f == COORD_CHAT_LLAMA2_SYS_STRIP, inside = 1;
    put(b, "[INST] ");
    for (int i = 0; i < n; i++) {
        if (!inside) {
            inside = 1;
            put(b, bos_inside ? "<s>[INST] " : "[INST] ");
        }
        void (*content)(sbuf *, const char *) = strip ? put_trim : put;
        if (is_role(&m[i], "system")) {
            put(b, sys_tags ? "<<SYS>>\n" : "");
            content(b, m[i].content);
            put(b, sys_tags ? "\n<</SYS>>\n\n" : "\n");
        } else if (is_role(&m[i], "user")) {
            content(b, m[i].content);
            put(b, " [/INST]");
        } else {
            content(b, m[i].content);
            put(b, "</s>");
            inside = 0;
        }
    }
}

/* Mistral v1 / v3 / v3-tekken; no generation prompt. */
static void render_mistral_v1_v3(coord_chat_family f, const coord_chat_msg *m, int n, sbuf *b)
{
    const char *lead = f == COORD_CHAT_MISTRAL_V1 ? " " : "";
    const char *trail = f == COORD_CHAT_MISTRAL_V3_TEKKEN ? "" : " ";
    int inside = 0;
    for (int i = 0; i < n; i++) {
        if (!inside) {
            put(b, lead);
            put(b, "[INST]");
            put(b, trail);
            inside = 1;
        }
        if (is_role(&m[i], "system")) {
            put(b, m[i].content);
            put(b, "\n\n");
        } else if (is_role(&m[i], "user")) {
            put(b, m[i].content);
            put(b, lead);
            put(b, "[/INST]");
        } else {
            put(b, trail);
            (f == COORD_CHAT_MISTRAL_V3 ? put_trim : put)(b, m[i].content);
            put(b, "</s>");
            inside = 0;
        }
    }
}

/* Mistral v7 (and v7-tekken, without the spaces); no generation prompt. */
static void render_mistral_v7(coord_chat_family f, const coord_chat_msg *m, int n, sbuf *b)
{
    const char *sp = f == COORD_CHAT_MISTRAL_V7 ? " " : "";
    for (int i = 0; i < n; i++) {
        if (is_role(&m[i], "system")) {
            put(b, "[SYSTEM_PROMPT]");
            put(b, sp);
            put(b, m[i].content);
            put(b, "[/SYSTEM_PROMPT]");
        } else if (is_role(&m[i], "user")) {
            put(b, "[INST]");
            put(b, sp);
            put(b, m[i].content);
            put(b, "[/INST]");
        } else {
            put(b, sp);
            put(b, m[i].content);
            put(b, "</s>");
        }
    }
}

static void render_llama3(const coord_chat_msg *m, int n, int gen, sbuf *b)
{
    for (int i = 0; i < n; i++) {
        put(b, "<|start_header_id|>");
        put(b, m[i].role);
        put(b, "<|end_header_id|>\n\n");
        put_trim(b, m[i].content);
        put(b, "<|eot_id|>");
    }
    if (gen) {
        put(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    }
}

/* Gemma has no system role: system messages (trimmed, concatenated) open the next user turn;
 * "assistant" is "model". */
static void render_gemma(const coord_chat_msg *m, int n, int gen, sbuf *b)
{
    sbuf sys = {0};
    for (int i = 0; i < n; i++) {
        if (is_role(&m[i], "system")) {
            put_trim(&sys, m[i].content);
            continue;
        }
        int model = is_role(&m[i], "assistant");
        put(b, model ? "<start_of_turn>model\n" : "<start_of_turn>user\n");
        if (sys.n > 0 && !model) {
            put_n(b, sys.p, sys.n);
            put(b, "\n\n");
            sys.n = 0;
        }
        put_trim(b, m[i].content);
        put(b, "<end_of_turn>\n");
    }
    if (gen) {
        put(b, "<start_of_turn>model\n");
    }
    b->oom |= sys.oom;
    free(sys.p);
}

/* Phi-3 ("<|role|>\n...<|end|>\n") and Phi-4 ("<|im_start|>role<|im_sep|>...<|im_end|>"). */
static void render_phi(coord_chat_family f, const coord_chat_msg *m, int n, int gen, sbuf *b)
{
    int phi4 = f == COORD_CHAT_PHI4;
    for (int i = 0; i < n; i++) {
        put(b, phi4 ? "<|im_start|>" : "<|");
        put(b, m[i].role);
        put(b, phi4 ? "<|im_sep|>" : "|>\n");
        put(b, m[i].content);
        put(b, phi4 ? "<|im_end|>" : "<|end|>\n");
    }
    if (gen) {
        put(b, phi4 ? "<|im_start|>assistant<|im_sep|>" : "<|assistant|>\n");
    }
}

em_status coord_chat_render(const coord_chat_template *t, const coord_chat_msg *msgs, int n,
                            int add_generation_prompt, char **out, size_t *out_len, char *err,
                            size_t errlen)
{
    *out = NULL;
    *out_len = 0;
    em_status st = coord_chat_validate(msgs, n, err, errlen);
    if (st != EM_OK) {
        return st;
    }
    coord_chat_family f = t ? t->family : COORD_CHAT_NONE;
    if (f == COORD_CHAT_NONE || (unsigned)f >= COORD_CHAT_FAMILY_COUNT) {
        snprintf(err, errlen,
                 "messages: model has no supported chat template (send text or "
                 "tokens instead)");
        return EM_EINVAL;
    }
    sbuf b = {0};
    put_n(&b, "", 0); /* an empty rendering is still a string */
    switch (f) {
    case COORD_CHAT_CHATML:
        render_chatml(t, msgs, n, add_generation_prompt, &b);
        break;
    case COORD_CHAT_LLAMA2:
    case COORD_CHAT_LLAMA2_SYS:
    case COORD_CHAT_LLAMA2_SYS_BOS:
    case COORD_CHAT_LLAMA2_SYS_STRIP:
        render_llama2(f, msgs, n, &b);
        break;
    case COORD_CHAT_MISTRAL_V1:
    case COORD_CHAT_MISTRAL_V3:
    case COORD_CHAT_MISTRAL_V3_TEKKEN:
        render_mistral_v1_v3(f, msgs, n, &b);
        break;
    case COORD_CHAT_MISTRAL_V7:
    case COORD_CHAT_MISTRAL_V7_TEKKEN:
        render_mistral_v7(f, msgs, n, &b);
        break;
    case COORD_CHAT_LLAMA3:
        render_llama3(msgs, n, add_generation_prompt, &b);
        break;
    case COORD_CHAT_GEMMA:
        render_gemma(msgs, n, add_generation_prompt, &b);
        break;
    default:
        render_phi(f, msgs, n, add_generation_prompt, &b);
        break;
    }
    if (b.oom) {
        free(b.p);
        snprintf(err, errlen, "messages: out of memory");
        return EM_ENOMEM;
    }
    *out = b.p;
    *out_len = b.n;
    return EM_OK;
}

/* coordinator/chat_template: family detection from Jinja sources (table, in llama.cpp's order),
 * rendering of every family (table of hand-derived strings, following llama.cpp's renderer), the
 * default system message of SmolLM2's ChatML template (expected strings checked against jinja2
 * with chat_template_expected.py), message validation, and the template read from the SmolLM2
 * GGUF when the GGUF reader can open it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/chat_template.h"
#include "model/gguf.h"
#include "model/model.h"
#include "tests/testutil/testutil.h"

/* SmolLM2-135M-Instruct's tokenizer.chat_template, verbatim. */
static const char k_smollm2[] =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
    "'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|im_start|>assistant\n' }}{% endif %}";
#define SMOL_SYS "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

/* ---- detection ------------------------------------------------------------------------------ */

static const struct {
    const char *name, *src; /* src NULL: no template */
    coord_chat_family want;
    const char *default_system; /* NULL: none */
} k_detect[] = {
    {"SmolLM2", k_smollm2, COORD_CHAT_CHATML, SMOL_SYS},
    {"OpenHermes ChatML",
     "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
     "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
     "'<|im_start|>assistant\\n' }}{% endif %}",
     COORD_CHAT_CHATML, NULL},
    {"Qwen2.5-style default (escaped \\n)",
     "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + "
     "messages[0]['content'] + '<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou are "
     "Qwen, a \\'helpful\\' assistant.<|im_end|>\\n' }}{%- endif %}",
     COORD_CHAT_CHATML, "You are Qwen, a 'helpful' assistant."},
    {"ChatML system literal without a messages[0] test",
     "{{ '<|im_start|>system\\nHello<|im_end|>\\n' }}{% for m in messages %}<|im_start|>{% endfor "
     "%}",
     COORD_CHAT_CHATML, NULL},
    {"Phi-4", "{{'<|im_start|>system<|im_sep|>' + message['content'] + '<|im_end|>'}}",
     COORD_CHAT_PHI4, NULL},
    {"SmolVLM (not ChatML)", "<|im_start|>{{ message['role'] }}<end_of_utterance>", COORD_CHAT_NONE,
     NULL},
    {"Mistral v7",
     "{{ '[SYSTEM_PROMPT] ' + message['content'] + '[/SYSTEM_PROMPT]' }}{{ '[INST] ' }}",
     COORD_CHAT_MISTRAL_V7, NULL},
    {"Mistral v1", "{{ ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}",
     COORD_CHAT_MISTRAL_V1, NULL},
    {"Mistral v3", "{{- '[AVAILABLE_TOOLS] ' }}{{- '[INST] ' + message['content'] + '[/INST]' }}",
     COORD_CHAT_MISTRAL_V3, NULL},
    {"Mistral v3 tekken", "{{- \"[AVAILABLE_TOOLS]\" }}{{- \"[INST]\" + message[\"content\"] }}",
     COORD_CHAT_MISTRAL_V3_TEKKEN, NULL},
    {"Llama-2 chat (strip)", "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}<<SYS>>",
     COORD_CHAT_LLAMA2_SYS_STRIP, NULL},
    {"Llama-2 bos inside", "{{- bos_token + '[INST] ' + messages[idx]['content'] }}<<SYS>>",
     COORD_CHAT_LLAMA2_SYS_BOS, NULL},
    {"Llama-2 sys", "{{ '[INST] <<SYS>>\\n' + system_message }}", COORD_CHAT_LLAMA2_SYS, NULL},
    {"Llama-2 plain", "{{ '[INST] ' + message['content'] + ' [/INST]' }}", COORD_CHAT_LLAMA2, NULL},
    {"starts with mistral", "mistral-ish template", COORD_CHAT_LLAMA2, NULL},
    {"Phi-3", "{{'<|user|>' + '\\n' + message['content'] + '<|end|>' + '\\n' + '<|assistant|>'}}",
     COORD_CHAT_PHI3, NULL},
    {"Falcon 3 (unsupported)", "<|user|>{{ m }}<|assistant|></s>", COORD_CHAT_NONE, NULL},
    {"Zephyr (unsupported)", "<|user|>\n{{ m }}<|endoftext|>", COORD_CHAT_NONE, NULL},
    {"Gemma",
     "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}",
     COORD_CHAT_GEMMA, NULL},
    {"Vicuna (unsupported)", "{{'USER: ' + m}}{{'ASSISTANT: ' + m}}", COORD_CHAT_NONE, NULL},
    {"Command-R before Llama-3",
     "<|START_OF_TURN_TOKEN|><|USER_TOKEN|><|start_header_id|>"
     "<|end_header_id|>",
     COORD_CHAT_NONE, NULL},
    {"Llama-3",
     "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + "
     "message['content'] | trim + '<|eot_id|>' %}",
     COORD_CHAT_LLAMA3, NULL},
    {"name chatml", "chatml", COORD_CHAT_CHATML, NULL},
    {"name llama3", "llama3", COORD_CHAT_LLAMA3, NULL},
    {"name mistral-v7-tekken", "mistral-v7-tekken", COORD_CHAT_MISTRAL_V7_TEKKEN, NULL},
    {"name of an unsupported family", "zephyr", COORD_CHAT_NONE, NULL},
    {"unknown template", "{{ messages }}", COORD_CHAT_NONE, NULL},
    {"empty template", "", COORD_CHAT_NONE, NULL},
    {"no template", NULL, COORD_CHAT_NONE, NULL},
};

static void test_detect(void)
{
    for (size_t i = 0; i < sizeof k_detect / sizeof k_detect[0]; i++) {
        coord_chat_template t;
        const char *src = k_detect[i].src;
        CHECK(coord_chat_template_detect(src, src ? strlen(src) : 0, &t) == EM_OK, "%s",
              k_detect[i].name);
        CHECK(t.family == k_detect[i].want, "%s: family %s, want %s", k_detect[i].name,
              coord_chat_family_name(t.family), coord_chat_family_name(k_detect[i].want));
        const char *ds = k_detect[i].default_system;
        CHECK(ds ? t.default_system && strcmp(t.default_system, ds) == 0 : t.default_system == NULL,
              "%s: default system '%s', want '%s'", k_detect[i].name,
              t.default_system ? t.default_system : "(none)", ds ? ds : "(none)");
        coord_chat_template_free(&t);
    }
    /* a source that is not NUL-terminated where it ends: only len bytes count */
    coord_chat_template t;
    CHECK(coord_chat_template_detect("llama3xyz", 6, &t) == EM_OK && t.family == COORD_CHAT_LLAMA3,
          "length-bounded source");
    coord_chat_template_free(&t);
}

/* ---- rendering --------------------------------------------------------------------------------
 */

static const coord_chat_msg k_conv_a[] = {{"system", "You are terse."},
                                          {"user", "Hi"},
                                          {"assistant", "  Hello!  "},
                                          {"user", "Name a color."}};
static const coord_chat_msg k_conv_b[] = {{"user", "What is 2+2?"}};
static const coord_chat_msg k_conv_c[] = {{"user", "Hi"}, {"assistant", "Hello"}, {"user", "Bye"}};
static const coord_chat_msg k_conv_d[] = {{"assistant", "I start."}};

#define CONV(c) c, (int)(sizeof c / sizeof c[0])

/* Conversation A rendered with the generation prompt, per family (llama.cpp's rules: Llama-2 and
 * Mistral have no generation prompt; Llama-3 and Gemma trim contents; Gemma folds the system
 * message into the next user turn). */
static const struct {
    const char *family;
    const char *want;
} k_render_a[] = {
    {"chatml", "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
               "<|im_start|>assistant\n  Hello!  <|im_end|>\n<|im_start|>user\nName a "
               "color.<|im_end|>\n<|im_start|>assistant\n"},
    {"llama2", "[INST] You are terse.\nHi [/INST]  Hello!  </s>[INST] Name a color. [/INST]"},
    {"llama2-sys", "[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi [/INST]  Hello!  </s>[INST] "
                   "Name a color. [/INST]"},
    {"llama2-sys-bos", "[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi [/INST]  Hello!  "
                       "</s><s>[INST] Name a color. [/INST]"},
    {"llama2-sys-strip", "[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi [/INST]Hello!</s>[INST] "
                         "Name a color. [/INST]"},
    {"mistral-v1", " [INST] You are terse.\n\nHi [/INST]   Hello!  </s> [INST] Name a color. "
                   "[/INST]"},
    {"mistral-v3", "[INST] You are terse.\n\nHi[/INST] Hello!</s>[INST] Name a color.[/INST]"},
    {"mistral-v3-tekken", "[INST]You are terse.\n\nHi[/INST]  Hello!  </s>[INST]Name a "
                          "color.[/INST]"},
    {"mistral-v7", "[SYSTEM_PROMPT] You are terse.[/SYSTEM_PROMPT][INST] Hi[/INST]   Hello!  "
                   "</s>[INST] Name a color.[/INST]"},
    {"mistral-v7-tekken", "[SYSTEM_PROMPT]You are terse.[/SYSTEM_PROMPT][INST]Hi[/INST]  Hello!  "
                          "</s>[INST]Name a color.[/INST]"},
    {"llama3", "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
               "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
               "<|start_header_id|>user<|end_header_id|>\n\nName a color.<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\n"},
    {"gemma", "<start_of_turn>user\nYou are terse.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
              "Hello!<end_of_turn>\n<start_of_turn>user\nName a color.<end_of_turn>\n"
              "<start_of_turn>model\n"},
    {"phi3", "<|system|>\nYou are terse.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n  Hello!  "
             "<|end|>\n<|user|>\nName a color.<|end|>\n<|assistant|>\n"},
    {"phi4", "<|im_start|>system<|im_sep|>You are terse.<|im_end|><|im_start|>user<|im_sep|>Hi"
             "<|im_end|><|im_start|>assistant<|im_sep|>  Hello!  <|im_end|><|im_start|>user"
             "<|im_sep|>Name a color.<|im_end|><|im_start|>assistant<|im_sep|>"},
};

static int render_is(const coord_chat_template *t, const coord_chat_msg *m, int n, int gen,
                     const char *want, const char *what)
{
    char *out = NULL, err[256] = "";
    size_t len = 0;
    em_status st = coord_chat_render(t, m, n, gen, &out, &len, err, sizeof err);
    int ok = st == EM_OK && out && len == strlen(want) && strcmp(out, want) == 0;
    CHECK(ok, "%s: status %s (%s)\n   got  \"%s\"\n   want \"%s\"", what, em_status_str(st), err,
          out ? out : "(null)", want);
    free(out);
    return ok;
}

static void test_render_families(void)
{
    int covered[COORD_CHAT_FAMILY_COUNT] = {0};
    for (size_t i = 0; i < sizeof k_render_a / sizeof k_render_a[0]; i++) {
        coord_chat_template t;
        const char *name = k_render_a[i].family;
        CHECK(coord_chat_template_detect(name, strlen(name), &t) == EM_OK, "%s", name);
        CHECK(strcmp(coord_chat_family_name(t.family), name) == 0, "name of %s", name);
        render_is(&t, CONV(k_conv_a), 1, k_render_a[i].want, name);
        covered[t.family] = 1;
        coord_chat_template_free(&t);
    }
    for (int f = 1; f < COORD_CHAT_FAMILY_COUNT; f++) {
        CHECK(covered[f], "family %s has no rendering case", coord_chat_family_name(f));
    }
    /* without the generation prompt */
    coord_chat_template t = {COORD_CHAT_CHATML, NULL};
    render_is(&t, CONV(k_conv_b), 0, "<|im_start|>user\nWhat is 2+2?<|im_end|>\n", "chatml nogen");
    t.family = COORD_CHAT_LLAMA3;
    render_is(&t, CONV(k_conv_b), 0,
              "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>", "llama3 nogen");
    t.family = COORD_CHAT_LLAMA2;
    render_is(&t, CONV(k_conv_b), 0, "[INST] What is 2+2? [/INST]", "llama2 nogen");
    t.family = COORD_CHAT_GEMMA; /* a system message with no user turn after it is dropped */
    static const coord_chat_msg sys_last[] = {{"user", "Hi"}, {"system", "Be brief."}};
    render_is(&t, CONV(sys_last), 0, "<start_of_turn>user\nHi<end_of_turn>\n", "gemma sys last");
}

/* SmolLM2: the expected strings are what jinja2 renders from k_smollm2 (printed by
 * chat_template_expected.py for conversations A-D). */
static void test_smollm2(const char *src, size_t len, const char *what)
{
    static const struct {
        const coord_chat_msg *m;
        int n, gen;
        const char *want;
    } cases[] = {
        {CONV(k_conv_a), 1,
         "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
         "<|im_start|>assistant\n  Hello!  <|im_end|>\n<|im_start|>user\nName a "
         "color.<|im_end|>\n<|im_start|>assistant\n"},
        {CONV(k_conv_b), 1,
         "<|im_start|>system\n" SMOL_SYS "<|im_end|>\n<|im_start|>user\nWhat is "
         "2+2?<|im_end|>\n<|im_start|>assistant\n"},
        {CONV(k_conv_b), 0,
         "<|im_start|>system\n" SMOL_SYS "<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"},
        {CONV(k_conv_c), 1,
         "<|im_start|>system\n" SMOL_SYS "<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
         "<|im_start|>assistant\nHello<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
         "<|im_start|>assistant\n"},
        {CONV(k_conv_d), 0,
         "<|im_start|>system\n" SMOL_SYS "<|im_end|>\n<|im_start|>assistant\nI "
         "start.<|im_end|>\n"},
    };
    coord_chat_template t;
    CHECK(coord_chat_template_detect(src, len, &t) == EM_OK && t.family == COORD_CHAT_CHATML,
          "%s: ChatML", what);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[96];
        snprintf(name, sizeof name, "%s case %zu", what, i);
        render_is(&t, cases[i].m, cases[i].n, cases[i].gen, cases[i].want, name);
    }
    coord_chat_template_free(&t);
}

/* The template as stored in the model file, where the GGUF reader can open it. */
static void test_smollm2_gguf(void)
{
    const char *path = model_find_default();
    if (path == NULL) {
        printf("SKIPPED: SmolLM2 chat template from the GGUF (model not installed: "
               "scripts/install-deps.sh, or set EMSERVE_MODEL)\n");
        return;
    }
    gguf_file *f = NULL;
    char err[256] = "";
    if (gguf_open(path, &f, err, sizeof err) != EM_OK) {
        CHECK(0, "opening %s: %s", path, err);
        return;
    }
    const gguf_kv *kv = gguf_find_kv(f, "tokenizer.chat_template");
    gguf_str s = {0, NULL};
    CHECK(kv && gguf_get_arr_str(f, kv, 0, &s) == EM_OK, "tokenizer.chat_template in %s", path);
    CHECK(s.len == strlen(k_smollm2) && memcmp(s.data, k_smollm2, s.len) == 0,
          "the GGUF's template is the one this test holds");
    if (s.data) {
        test_smollm2(s.data, (size_t)s.len, "SmolLM2 GGUF");
    }
    gguf_close(f);
}

/* ---- validation ------------------------------------------------------------------------------ */

static void test_validate(void)
{
    static const coord_chat_msg bad_role[] = {{"user", "a"}, {"tool", "b"}};
    static const coord_chat_msg empty_role[] = {{"", "a"}};
    static const coord_chat_msg case_role[] = {{"System", "a"}};
    static const coord_chat_msg null_content[] = {{"user", NULL}};
    static const struct {
        const char *name;
        const coord_chat_msg *m;
        int n;
        const char *want; /* substring of the error; NULL: valid */
    } cases[] = {
        {"valid", CONV(k_conv_a), NULL},
        {"empty list", k_conv_a, 0, "messages: empty"},
        {"unknown role", CONV(bad_role), "messages[1].role: unknown role 'tool'"},
        {"empty role", CONV(empty_role), "messages[0].role: empty"},
        {"roles are case-sensitive", CONV(case_role), "unknown role 'System'"},
        {"no content", CONV(null_content), "messages[0].content"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[256] = "";
        em_status st = coord_chat_validate(cases[i].m, cases[i].n, err, sizeof err);
        if (cases[i].want == NULL) {
            CHECK(st == EM_OK, "%s: %s", cases[i].name, err);
        } else {
            CHECK(st == EM_EINVAL && strstr(err, cases[i].want), "%s: '%s'", cases[i].name, err);
        }
    }
    coord_chat_msg *many = malloc(sizeof *many * (COORD_CHAT_MAX_MESSAGES + 1));
    for (int i = 0; i <= COORD_CHAT_MAX_MESSAGES; i++) {
        many[i] = (coord_chat_msg){"user", "x"};
    }
    char err[256] = "";
    CHECK(coord_chat_validate(many, COORD_CHAT_MAX_MESSAGES, err, sizeof err) == EM_OK, "%s", err);
    CHECK(coord_chat_validate(many, COORD_CHAT_MAX_MESSAGES + 1, err, sizeof err) == EM_EINVAL &&
              strstr(err, "at most"),
          "too many messages: '%s'", err);
    free(many);

    /* No template: a clear error, after the messages themselves were checked. */
    char *out = (char *)1;
    size_t len = 1;
    coord_chat_template none = {COORD_CHAT_NONE, NULL};
    CHECK(coord_chat_render(&none, CONV(k_conv_b), 1, &out, &len, err, sizeof err) == EM_EINVAL &&
              strstr(err, "model has no supported chat template") && out == NULL && len == 0,
          "no template: '%s'", err);
    CHECK(coord_chat_render(NULL, CONV(k_conv_b), 1, &out, &len, err, sizeof err) == EM_EINVAL,
          "NULL template");
    CHECK(coord_chat_render(&none, CONV(bad_role), 1, &out, &len, err, sizeof err) == EM_EINVAL &&
              strstr(err, "unknown role"),
          "role checked first: '%s'", err);
}

/* Sources spliced from template fragments, quotes and escapes (unterminated literals, a
 * literal at the very end, ...): detection and rendering never read out of bounds (run under
 * ASan) and a default system message, when found, is a complete ChatML literal's text. */
static void test_hostile_sources(void)
{
    static const char *const parts[] = {"'",
                                        "\"",
                                        "\\",
                                        "\\n",
                                        "<|im_start|>system\n",
                                        "<|im_start|>system",
                                        "<|im_end|>\n",
                                        "<|im_end|>",
                                        "messages[0]['role']",
                                        "messages[0].role",
                                        "[INST]",
                                        "<<SYS>>",
                                        "mistral",
                                        "<|im_sep|>",
                                        "<start_of_turn>",
                                        "<|start_header_id|>",
                                        "<|end_header_id|>",
                                        "x",
                                        " ",
                                        "<|assistant|>",
                                        "<|end|>",
                                        "content.strip()",
                                        "[SYSTEM_PROMPT]",
                                        "chatml"};
    const int n_parts = (int)(sizeof parts / sizeof parts[0]);
    unsigned seed = 12345;
    char src[512];
    for (int iter = 0; iter < 5000; iter++) {
        size_t n = 0;
        int k = 1 + (int)(rand_r(&seed) % 12);
        for (int j = 0; j < k; j++) {
            const char *p = parts[rand_r(&seed) % (unsigned)n_parts];
            size_t pl = strlen(p);
            if (n + pl < sizeof src) {
                memcpy(src + n, p, pl);
                n += pl;
            }
        }
        /* exactly n bytes, no NUL after them */
        char *heap = malloc(n ? n : 1);
        memcpy(heap, src, n);
        coord_chat_template t;
        CHECK(coord_chat_template_detect(heap, n, &t) == EM_OK, "detect");
        CHECK(t.default_system == NULL || strstr(t.default_system, "<|im_") == NULL,
              "default system '%s' holds a ChatML tag", t.default_system);
        if (t.family != COORD_CHAT_NONE) {
            char *out = NULL, err[128];
            size_t len = 0;
            CHECK(coord_chat_render(&t, CONV(k_conv_a), iter & 1, &out, &len, err, sizeof err) ==
                      EM_OK,
                  "render %s: %s", coord_chat_family_name(t.family), err);
            free(out);
        }
        coord_chat_template_free(&t);
        free(heap);
    }
}

int main(void)
{
    test_detect();
    test_render_families();
    test_smollm2(k_smollm2, strlen(k_smollm2), "SmolLM2 (held)");
    test_smollm2_gguf();
    test_validate();
    test_hostile_sources();
    TEST_END();
}

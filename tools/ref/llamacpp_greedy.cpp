// Oracle driver for the goldens cross-check (not part of emserve's build): runs llama.cpp's own
// CPU forward (libllama, built by bench/llamacpp/build.sh) on given prompt token ids and
// prints the top-5 logits after the prompt and n greedy ids (argmax, ties to the lower id)
// with each step's top1-top2 logit margin. Compiled on demand by tools/ref/make_goldens.py.
//
// usage: llamacpp_greedy MODEL N_PREDICT KV_TYPE(f16|f32) FLASH(0|1) ID...
// output lines: "top5 id:logit ...", "greedy id ...", "margins m ..."
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "llama.h"

static void quiet_log(ggml_log_level, const char *, void *)
{
}

static int argmax2(const float *l, int n, float *margin)
{
    int a = 0, b = -1;
    for (int i = 1; i < n; i++) {
        if (l[i] > l[a]) {
            b = a;
            a = i;
        } else if (b < 0 || l[i] > l[b]) {
            b = i;
        }
    }
    *margin = l[a] - l[b];
    return a;
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: %s MODEL N_PREDICT f16|f32 0|1 ID...\n", argv[0]);
        return 2;
    }
    const int n_predict = atoi(argv[2]);
    const bool kv_f32 = strcmp(argv[3], "f32") == 0;
    const bool flash = atoi(argv[4]) != 0;
    std::vector<llama_token> prompt;
    for (int i = 5; i < argc; i++)
        prompt.push_back((llama_token)atoi(argv[i]));

    llama_log_set(quiet_log, nullptr);
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (!model) {
        fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    const llama_vocab *vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);

    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(prompt.size() + n_predict + 16);
    cp.n_batch = cp.n_ctx;
    cp.n_ubatch = cp.n_ctx;
    cp.n_threads = cp.n_threads_batch = 1;
    cp.type_k = cp.type_v = kv_f32 ? GGML_TYPE_F32 : GGML_TYPE_F16;
    cp.flash_attn_type = flash ? LLAMA_FLASH_ATTN_TYPE_ENABLED : LLAMA_FLASH_ATTN_TYPE_DISABLED;
    llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        fprintf(stderr, "cannot create context\n");
        return 1;
    }

    if (llama_decode(ctx, llama_batch_get_one(prompt.data(), (int32_t)prompt.size()))) {
        fprintf(stderr, "decode failed\n");
        return 1;
    }
    const float *l = llama_get_logits_ith(ctx, -1);
    std::vector<int> order;
    std::vector<bool> used(n_vocab, false);
    printf("top5");
    for (int k = 0; k < 5; k++) {
        int best = -1;
        for (int i = 0; i < n_vocab; i++)
            if (!used[i] && (best < 0 || l[i] > l[best]))
                best = i;
        used[best] = true;
        printf(" %d:%.5f", best, l[best]);
    }
    printf("\n");

    std::vector<int> ids;
    std::vector<float> margins;
    for (int step = 0; step < n_predict; step++) {
        float m;
        llama_token next = argmax2(l, n_vocab, &m);
        ids.push_back(next);
        margins.push_back(m);
        if (step + 1 == n_predict)
            break;
        if (llama_decode(ctx, llama_batch_get_one(&next, 1))) {
            fprintf(stderr, "decode failed\n");
            return 1;
        }
        l = llama_get_logits_ith(ctx, -1);
    }
    printf("greedy");
    for (int id : ids)
        printf(" %d", id);
    printf("\nmargins");
    for (float m : margins)
        printf(" %.4f", m);
    printf("\n");
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}

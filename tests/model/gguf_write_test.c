/* GGUF writer round trips through the reader: every metadata type, tensor layout and alignment,
 * data from buffers and from the fill callback, file output, and rejection of bad tensors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/gguf.h"
#include "model/gguf_write.h"
#include "tests/testutil/testutil.h"

static int str_is(gguf_str s, const char *z)
{
    return s.len == strlen(z) && memcmp(s.data, z, s.len) == 0;
}

static int g_fill_calls;
/* Tensor idx, byte k = (idx * 31 + k) & 0xff. */
static em_status fill(void *user, int idx, const char *name, void *dst, size_t nbytes)
{
    (void)user;
    (void)name;
    g_fill_calls++;
    for (size_t k = 0; k < nbytes; k++)
        ((uint8_t *)dst)[k] = (uint8_t)(idx * 31 + k);
    return EM_OK;
}

static em_status fill_fail(void *user, int idx, const char *name, void *dst, size_t nbytes)
{
    return idx == 1 ? EM_EIO : fill(user, idx, name, dst, nbytes);
}

int main(void)
{
    /* nbytes table */
    static const struct {
        uint32_t type;
        uint64_t n;
        size_t want;
    } k_nb[] = {
        {GGML_TYPE_F32, 10, 40},
        {GGML_TYPE_F16, 10, 20},
        {GGML_TYPE_Q8_0, 64, 68},
        {GGML_TYPE_Q8_0, 33, 0},
        {7, 10, 0},
        {GGML_TYPE_F32, (uint64_t)1 << 62, 0},
        {2 /* q4_0 */, 64, 36},
        {3 /* q4_1 */, 64, 40},
        {3, 48, 0},
        {12 /* q4_k */, 512, 288},
        {14 /* q6_k */, 256, 210},
        {14, 128, 0},
        {4, 32, 0},
        {5, 32, 0},
    };
    for (size_t i = 0; i < sizeof k_nb / sizeof k_nb[0]; i++)
        CHECK(gguf_type_nbytes(k_nb[i].type, k_nb[i].n) == k_nb[i].want, "nbytes case %zu", i);

    static const uint32_t k_align[] = {32, 64, 1, 4096};
    for (size_t a = 0; a < sizeof k_align / sizeof k_align[0]; a++) {
        gguf_writer *w;
        CHECK(gguf_writer_create(k_align[a], &w) == EM_OK, "create");
        const char *strs[] = {"", "a", "\xe2\x96\x81x"};
        float fv[3] = {1.5f, -2.f, 1e-30f};
        int32_t iv[4] = {-1, 0, 7, 2147483647};
        CHECK(gguf_writer_set_u32(w, "general.alignment", k_align[a]) == EM_OK &&
                  gguf_writer_set_str(w, "s", "hello") == EM_OK &&
                  gguf_writer_set_i32(w, "i", -5) == EM_OK &&
                  gguf_writer_set_f32(w, "f", 0.25f) == EM_OK &&
                  gguf_writer_set_u64(w, "u64", 1ull << 40) == EM_OK &&
                  gguf_writer_set_bool(w, "b", 1) == EM_OK &&
                  gguf_writer_set_arr_str(w, "as", strs, 3) == EM_OK &&
                  gguf_writer_set_arr_f32(w, "af", fv, 3) == EM_OK &&
                  gguf_writer_set_arr_i32(w, "ai", iv, 4) == EM_OK &&
                  gguf_writer_set_arr_str(w, "empty", NULL, 0) == EM_OK,
              "set metadata");
        float td[6] = {1, 2, 3, 4, 5, 6};
        uint64_t ne_a[2] = {3, 2}, ne_b[1] = {5}, ne_c[4] = {32, 2, 1, 3};
        CHECK(gguf_writer_add_tensor(w, "a", 2, ne_a, GGML_TYPE_F32, td) == EM_OK &&
                  gguf_writer_add_tensor(w, "b", 1, ne_b, GGML_TYPE_F16, NULL) == EM_OK &&
                  gguf_writer_add_tensor(w, "c", 4, ne_c, GGML_TYPE_Q8_0, NULL) == EM_OK,
              "add tensors");
        /* bad tensors are refused */
        uint64_t ne_bad[4] = {33, 1, 1, 1}, ne_zero[2] = {4, 0};
        CHECK(gguf_writer_add_tensor(w, "x", 0, ne_a, GGML_TYPE_F32, td) == EM_EINVAL &&
                  gguf_writer_add_tensor(w, "x", 5, ne_c, GGML_TYPE_F32, td) == EM_EINVAL &&
                  gguf_writer_add_tensor(w, "x", 1, ne_bad, GGML_TYPE_Q8_0, NULL) == EM_EINVAL &&
                  gguf_writer_add_tensor(w, "x", 2, ne_zero, GGML_TYPE_F32, NULL) == EM_EINVAL &&
                  gguf_writer_add_tensor(w, "x", 1, ne_b, 99, NULL) == EM_EINVAL,
              "bad tensors rejected");
        void *buf = NULL;
        size_t size = 0;
        char err[256] = "";
        g_fill_calls = 0;
        CHECK(gguf_writer_write_mem(w, fill, NULL, &buf, &size, err, sizeof err) == EM_OK,
              "write: %s", err);
        CHECK(g_fill_calls == 2, "fill called %d times", g_fill_calls);
        gguf_file *f = NULL;
        if (buf && gguf_open_buffer(buf, size, &f, err, sizeof err) == EM_OK) {
            uint32_t u;
            float fl;
            gguf_str s;
            CHECK(f->version == 3 && f->n_kv == 10 && f->n_tensors == 3 &&
                      f->alignment == k_align[a],
                  "header v%u kv %llu t %llu align %u", f->version, (unsigned long long)f->n_kv,
                  (unsigned long long)f->n_tensors, f->alignment);
            const gguf_kv *kv = gguf_find_kv(f, "s");
            CHECK(kv && gguf_get_arr_str(f, kv, 0, &s) == EM_OK && str_is(s, "hello"), "str");
            kv = gguf_find_kv(f, "i");
            int32_t i32 = 0;
            if (kv)
                memcpy(&i32, kv->val, 4);
            CHECK(kv && kv->type == GGUF_TYPE_INT32 && i32 == -5, "i32");
            CHECK(gguf_get_f32(f, "f", &fl) == EM_OK && fl == 0.25f, "f32");
            CHECK(gguf_get_u32(f, "u64", &u) != EM_OK,
                  "u64 beyond u32 range is refused by get_u32");
            kv = gguf_find_kv(f, "b");
            CHECK(kv && kv->type == GGUF_TYPE_BOOL && kv->val[0] == 1, "bool");
            kv = gguf_find_kv(f, "as");
            gguf_str all[3];
            CHECK(kv && kv->arr_len == 3 && gguf_get_arr_strs(kv, all) == EM_OK &&
                      str_is(all[0], "") && str_is(all[1], "a") && str_is(all[2], strs[2]),
                  "string array");
            kv = gguf_find_kv(f, "af");
            CHECK(kv && kv->arr_type == GGUF_TYPE_FLOAT32 && kv->arr_len == 3 &&
                      memcmp(kv->val, fv, 12) == 0,
                  "f32 array");
            kv = gguf_find_kv(f, "ai");
            CHECK(kv && kv->arr_type == GGUF_TYPE_INT32 && kv->arr_len == 4 &&
                      memcmp(kv->val, iv, 16) == 0,
                  "i32 array");
            kv = gguf_find_kv(f, "empty");
            CHECK(kv && kv->arr_len == 0, "empty array");
            static const struct {
                const char *name;
                uint32_t nd, type;
                uint64_t ne3;
                size_t nbytes;
            } k_t[] = {{"a", 2, GGML_TYPE_F32, 1, 24},
                       {"b", 1, GGML_TYPE_F16, 1, 10},
                       {"c", 4, GGML_TYPE_Q8_0, 3, 204}};
            for (int i = 0; i < 3; i++) {
                const gguf_tensor_info *t = gguf_find_tensor(f, k_t[i].name);
                CHECK(t && t->n_dims == k_t[i].nd && t->type == k_t[i].type &&
                          t->ne[3] == k_t[i].ne3 && t->nbytes == k_t[i].nbytes &&
                          t->offset % k_align[a] == 0 &&
                          ((const uint8_t *)t->data - (const uint8_t *)buf) % k_align[a] == 0,
                      "tensor %s layout (align %u)", k_t[i].name, k_align[a]);
                if (!t)
                    continue;
                int ok = 1;
                for (size_t k = 0; k < t->nbytes; k++)
                    ok &= ((const uint8_t *)t->data)[k] ==
                          (i == 0 ? ((const uint8_t *)td)[k] : (uint8_t)(i * 31 + k));
                CHECK(ok, "tensor %s data", k_t[i].name);
            }
            gguf_close(f);
        } else {
            CHECK(0, "reader refused the writer's output (align %u): %s", k_align[a], err);
        }
        free(buf);
        /* file output equals memory output; a failing fill aborts and removes the file */
        char path[512];
        snprintf(path, sizeof path, "%s/gguf_write_test_%u.gguf", tu_tmpdir(), k_align[a]);
        CHECK(gguf_writer_write_file(w, path, fill, NULL, err, sizeof err) == EM_OK,
              "write file: %s", err);
        f = NULL;
        CHECK(gguf_open(path, &f, err, sizeof err) == EM_OK && f->n_tensors == 3, "reopen file: %s",
              err);
        gguf_close(f);
        CHECK(gguf_writer_write_file(w, path, fill_fail, NULL, err, sizeof err) == EM_EIO &&
                  strstr(err, "'b'"),
              "fill failure reported: %s", err);
        FILE *fp = fopen(path, "rb");
        CHECK(fp == NULL, "partial file removed");
        if (fp)
            fclose(fp);
        CHECK(gguf_writer_write_mem(w, NULL, NULL, &buf, &size, err, sizeof err) == EM_EINVAL,
              "no fill: %s", err);
        CHECK(gguf_writer_write_file(w, "/nonexistent-dir/x.gguf", fill, NULL, err, sizeof err) ==
                  EM_EIO,
              "unwritable path");
        gguf_writer_free(w);
    }
    gguf_writer *w = NULL;
    CHECK(gguf_writer_create(24, &w) == EM_EINVAL && w == NULL,
          "non-power-of-two alignment refused");
    TEST_END();
}

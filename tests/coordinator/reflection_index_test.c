/* coordinator/reflection_index over the FileDescriptorSet built into the binary: the files and
 * their names, a table of symbols that each file declares or not (messages, nested enums,
 * services, methods, near misses), and malformed sets (every truncation of the real one, bad
 * wire types) rejected without reading past the bytes. */
#include <stdlib.h>
#include <string.h>

#include "coordinator/reflection_index.h"
#include "proto/public_descriptors.h"
#include "tests/testutil/testutil.h"

#define CAP 8

static const char *const k_names[] = {"emserve/v1/emserve.proto", "grpc/health/v1/health.proto",
                                      "grpc/reflection/v1/reflection.proto"};

static const struct {
    const char *symbol;
    int file; /* index into k_names, -1: declared nowhere */
} k_symbols[] = {
    {"emserve.v1.Emserve", 0},
    {"emserve.v1.Emserve.Generate", 0},
    {"emserve.v1.Emserve.Tokenize", 0},
    {"emserve.v1.GenerateRequest", 0},
    {"emserve.v1.TokenizeResponse", 0},
    {"grpc.health.v1.Health.Watch", 1},
    {"grpc.health.v1.HealthCheckResponse", 1},
    {"grpc.health.v1.HealthCheckResponse.ServingStatus", 1},
    {"grpc.reflection.v1.ServerReflection.ServerReflectionInfo", 2},
    {"grpc.reflection.v1.ErrorResponse", 2},
    {"emserve.v1.Emserve.Nope", -1},
    {"emserve.v1.GenerateRequestX", -1},
    {"emserve.v1.GenerateReques", -1},
    {"emserve.v1", -1},
    {"emserve.v1.", -1},
    {"emserve.v2.Emserve", -1},
    {"Emserve", -1},
    {"", -1},
    {"grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING", -1},
    {"grpc.health.v1.Health.Watch.Extra", -1},
};

static void test_files(void)
{
    refl_file f[CAP];
    int n = 0;
    REQUIRE(refl_set_files(proto_public_descriptors, proto_public_descriptors_len, f, CAP, &n) ==
                EM_OK,
            "the built-in set parses");
    CHECK(n == 3, "3 files, got %d", n);
    for (int i = 0; i < n && i < 3; i++) {
        CHECK(refl_file_named(&f[i], k_names[i]), "file %d is %s", i, k_names[i]);
        CHECK(!refl_file_named(&f[i], "emserve/v1/emserve"), "prefix of a name is not a name");
    }
    for (size_t s = 0; s < sizeof k_symbols / sizeof k_symbols[0]; s++)
        for (int i = 0; i < n; i++) {
            int want = k_symbols[s].file == i;
            CHECK(refl_file_declares(&f[i], k_symbols[s].symbol) == want, "%s in %s: want %d",
                  k_symbols[s].symbol, k_names[i], want);
        }
    CHECK(refl_set_files(proto_public_descriptors, proto_public_descriptors_len, f, 2, &n) ==
              EM_ENOSPC,
          "more files than room");
}

/* Every strict prefix of the set ends inside a file's bytes (or its length): EM_EPROTO, and the
 * files found before it lie inside the prefix (run under ASan, an overread would abort). */
static void test_truncated(void)
{
    size_t len = proto_public_descriptors_len;
    int rejected = 0;
    for (size_t cut = 1; cut < len; cut++) {
        unsigned char *p = malloc(cut);
        REQUIRE(p, "malloc");
        memcpy(p, proto_public_descriptors, cut);
        refl_file f[CAP];
        int n = 0;
        em_status st = refl_set_files(p, cut, f, CAP, &n);
        rejected += st == EM_EPROTO;
        for (int i = 0; i < n; i++) {
            CHECK(f[i].data >= p && f[i].data + f[i].len <= p + cut, "file %d inside", i);
            (void)refl_file_declares(&f[i], "emserve.v1.Emserve.Generate");
        }
        free(p);
    }
    /* cuts exactly between two files leave a valid shorter set: 2 of them */
    CHECK(rejected == (int)len - 1 - 2, "truncations rejected: %d of %zu", rejected, len - 1);
}

static void test_bad_wire(void)
{
    static const struct {
        const char *what;
        unsigned char bytes[8];
        size_t n;
    } k_bad[] = {
        {"group wire type", {0x0b, 0x00}, 2},
        {"field number 0", {0x02, 0x00}, 2},
        {"length past the end", {0x0a, 0x05, 0x00}, 3},
        {"unterminated varint", {0x08, 0x80, 0x80}, 3},
        {"huge length", {0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 8},
    };
    for (size_t i = 0; i < sizeof k_bad / sizeof k_bad[0]; i++) {
        refl_file f[CAP];
        int n = 0;
        CHECK(refl_set_files(k_bad[i].bytes, k_bad[i].n, f, CAP, &n) == EM_EPROTO, "%s",
              k_bad[i].what);
    }
    refl_file f[CAP];
    int n = -1;
    CHECK(refl_set_files(NULL, 0, f, CAP, &n) == EM_OK && n == 0, "empty set: no files");
}

int main(void)
{
    test_files();
    test_truncated();
    test_bad_wire();
    TEST_END();
}

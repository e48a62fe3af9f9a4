/* A binary heap of merge candidates, shared by the BPE and SentencePiece tokenizers:
 * TOK_HEAP(name, type, before) defines `name` (a growable array of `type`) with
 * name_push (EM_ENOMEM when it cannot grow) and name_pop (the element that comes first by
 * before(a, b); the heap must not be empty). Free with free(h.v). */
#pragma once
#include <stddef.h>
#include <stdlib.h>

#include "common/status.h"

#define TOK_HEAP(name, type, before)                            \
    typedef struct {                                            \
        type *v;                                                \
        size_t n, cap;                                          \
    } name;                                                     \
                                                                \
    static em_status name##_push(name *h, type x)               \
    {                                                           \
        if (h->n == h->cap) {                                   \
            size_t nc = h->cap ? 2 * h->cap : 64;               \
            type *nv = realloc(h->v, nc * sizeof *nv);          \
            if (!nv)                                            \
                return EM_ENOMEM;                               \
            h->v = nv;                                          \
            h->cap = nc;                                        \
        }                                                       \
        size_t i = h->n++;                                      \
        while (i > 0) {                                         \
            size_t up = (i - 1) / 2;                            \
            if (!before(&x, &h->v[up]))                         \
                break;                                          \
            h->v[i] = h->v[up];                                 \
            i = up;                                             \
        }                                                       \
        h->v[i] = x;                                            \
        return EM_OK;                                           \
    }                                                           \
                                                                \
    static type name##_pop(name *h)                             \
    {                                                           \
        type top = h->v[0], last = h->v[--h->n];                \
        size_t i = 0;                                           \
        for (;;) {                                              \
            size_t c = 2 * i + 1;                               \
            if (c >= h->n)                                      \
                break;                                          \
            if (c + 1 < h->n && before(&h->v[c + 1], &h->v[c])) \
                c++;                                            \
            if (!before(&h->v[c], &last))                       \
                break;                                          \
            h->v[i] = h->v[c];                                  \
            i = c;                                              \
        }                                                       \
        if (h->n)                                               \
            h->v[i] = last;                                     \
        return top;                                             \
    }

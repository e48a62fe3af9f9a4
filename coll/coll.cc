// gloo behind the C API of coll.h (the only C++ in the project). Every entry point catches
// every exception: gloo reports errors (timeouts, closed peers) as C++ exceptions.
#include "coll/coll.h"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <gloo/allreduce_ring.h>
#include <gloo/barrier_all_to_all.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/file_store.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>

struct coll_ctx {
    std::shared_ptr<gloo::rendezvous::Context> ctx;
    std::string last_error;
    int rank = 0, size = 1;
};

namespace
{

void put_err(char *err, size_t errlen, const char *msg)
{
    if (err && errlen) {
        std::snprintf(err, errlen, "%s", msg);
    }
}

// A gloo Store whose operations are C callbacks (coll_store_ops).
class CallbackStore : public gloo::rendezvous::Store
{
  public:
    explicit CallbackStore(const coll_store_ops &ops, long timeout_ms)
        : ops_(ops), timeout_ms_(timeout_ms)
    {
    }

    void set(const std::string &key, const std::vector<char> &data) override
    {
        if (ops_.set(ops_.user, key.c_str(), data.data(), data.size()) != EM_OK) {
            throw std::runtime_error("store set failed for key " + key);
        }
    }

    std::vector<char> get(const std::string &key) override
    {
        wait({key}, std::chrono::milliseconds(timeout_ms_));
        size_t len = 0;
        void *p = ops_.get(ops_.user, key.c_str(), &len);
        if (p == nullptr) {
            throw std::runtime_error("store get failed for key " + key);
        }
        std::vector<char> v(static_cast<char *>(p), static_cast<char *>(p) + len);
        std::free(p);
        return v;
    }

    void wait(const std::vector<std::string> &keys) override
    {
        wait(keys, std::chrono::milliseconds(timeout_ms_));
    }

    void wait(const std::vector<std::string> &keys,
              const std::chrono::milliseconds &timeout) override
    {
        std::vector<const char *> k;
        for (const auto &s : keys) {
            k.push_back(s.c_str());
        }
        if (ops_.wait(ops_.user, k.data(), k.size(), static_cast<long>(timeout.count())) != EM_OK) {
            std::string msg = "Wait timeout for key(s):";
            for (const auto &s : keys) {
                msg += " " + s;
            }
            throw std::runtime_error(msg);
        }
    }

  private:
    coll_store_ops ops_;
    long timeout_ms_;
};

} // namespace

extern "C" coll_ctx *coll_init(int rank, int size, const char *rendezvous,
                               const coll_store_ops *ops, const char *prefix, const char *host,
                               long timeout_ms, char *err, size_t errlen)
{
    coll_store_ops tcp_ops{};
    bool have_tcp = false;
    coll_ctx *out = nullptr;
    if (rank < 0 || size < 1 || rank >= size) {
        put_err(err, errlen, "bad rank/size");
        return nullptr;
    }
    if (timeout_ms <= 0) {
        timeout_ms = 30000;
    }
    try {
        std::unique_ptr<gloo::rendezvous::Store> base;
        if (rendezvous && std::strncmp(rendezvous, "file:", 5) == 0) {
            base.reset(new gloo::rendezvous::FileStore(rendezvous + 5));
        } else if (rendezvous && std::strncmp(rendezvous, "tcp:", 4) == 0) {
            if (coll_store_client_ops(rendezvous + 4, &tcp_ops) != 0) {
                put_err(err, errlen, "bad tcp store address (want tcp:HOST:PORT)");
                return nullptr;
            }
            have_tcp = true;
            base.reset(new CallbackStore(tcp_ops, timeout_ms));
        } else if (ops) {
            base.reset(new CallbackStore(*ops, timeout_ms));
        } else {
            put_err(err, errlen, "no rendezvous given");
            return nullptr;
        }
        gloo::rendezvous::PrefixStore store(prefix ? prefix : "coll", *base);
        gloo::transport::tcp::attr attr;
        attr.hostname = host ? host : "127.0.0.1";
        auto dev = gloo::transport::tcp::CreateDevice(attr);
        auto ctx = std::make_shared<gloo::rendezvous::Context>(rank, size);
        ctx->setTimeout(std::chrono::milliseconds(timeout_ms));
        ctx->connectFullMesh(store, dev);
        // Sync pairs: the calling thread does the socket I/O itself (blocking reads), instead of
        // gloo's device thread handing every message over through a condition variable. On the
        // 2-vCPU test machine under load this took a 1 KiB all-reduce of 2 ranks from ~8 ms
        // (gloo::allreduce, unbound buffers) to ~0.1 ms. A peer that dies still makes the
        // read fail at once ("Connection closed by peer").
        for (int i = 0; i < size; i++) {
            if (i != rank) {
                ctx->getPair(i)->setSync(true, false);
            }
        }
        out = new coll_ctx;
        out->ctx = std::move(ctx);
        out->rank = rank;
        out->size = size;
    } catch (const std::exception &e) {
        put_err(err, errlen, e.what());
    } catch (...) {
        put_err(err, errlen, "unknown C++ exception");
    }
    if (have_tcp) {
        coll_store_client_ops_free(&tcp_ops);
    }
    return out;
}

// Runs op; a gloo exception becomes EM_EUNAVAILABLE with its message in c->last_error.
template <typename Op> static em_status guarded(coll_ctx *c, Op op)
{
    try {
        op();
        return EM_OK;
    } catch (const std::exception &e) {
        c->last_error = e.what();
    } catch (...) {
        c->last_error = "unknown C++ exception";
    }
    return EM_EUNAVAILABLE;
}

extern "C" em_status coll_allreduce_sum_float(coll_ctx *c, float *buf, size_t n)
{
    if (c == nullptr) {
        return EM_EINVAL;
    }
    if (n == 0 || c->size == 1) {
        return EM_OK;
    }
    if (n > static_cast<size_t>(INT32_MAX)) {
        c->last_error = "all-reduce of more than 2^31 floats";
        return EM_EINVAL;
    }
    // Bound-buffer ring algorithm (works with sync pairs); constructing it per call only
    // registers buffers locally (both ranks take the same slots in the same order).
    return guarded(c, [&] {
        std::vector<float *> ptrs{buf};
        gloo::AllreduceRing<float> ar(c->ctx, ptrs, static_cast<int>(n));
        ar.run();
    });
}

extern "C" em_status coll_reduce_hook(void *user, float *buf, size_t n)
{
    return coll_allreduce_sum_float(static_cast<coll_ctx *>(user), buf, n);
}

extern "C" em_status coll_barrier(coll_ctx *c)
{
    if (c == nullptr) {
        return EM_EINVAL;
    }
    return guarded(c, [&] {
        gloo::BarrierAllToAll barrier(c->ctx);
        barrier.run();
    });
}

extern "C" int coll_rank(const coll_ctx *c)
{
    return c ? c->rank : -1;
}

extern "C" int coll_size(const coll_ctx *c)
{
    return c ? c->size : 0;
}

extern "C" const char *coll_last_error(const coll_ctx *c)
{
    return c ? c->last_error.c_str() : "no context";
}

extern "C" void coll_destroy(coll_ctx *c)
{
    try {
        delete c;
    } catch (...) {
    }
}

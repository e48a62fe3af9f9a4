/* One status type for the whole project. Every fallible function returns em_status and writes
 * results through out-parameters; the RPC edge maps it to a gRPC status in one place. */
#pragma once

typedef enum {
    EM_OK = 0,
    EM_EINVAL = -1,       /* bad input from a request, a file or a flag */
    EM_ENOMEM = -2,       /* allocation failed */
    EM_ENOSPC = -3,       /* KV cache or slot table full: caller may retry smaller */
    EM_EDEVICE = -4,      /* accelerator error (sticky: the process should exit) */
    EM_EPROTO = -5,       /* malformed or unexpected protocol message */
    EM_ETIMEDOUT = -6,    /* deadline passed */
    EM_ECANCELED = -7,    /* aborted by the client or the operator */
    EM_EUNSUPPORTED = -8, /* valid but not implemented here (e.g. a tensor type) */
    EM_EIO = -9,          /* file or socket error */
    EM_EUNAVAILABLE = -10 /* a peer (worker) is gone */
} em_status;

/* Static string naming the status ("EM_EINVAL"), never NULL. */
const char *em_status_str(em_status s);

/* Names for em_status values. */
#include "common/status.h"

const char *em_status_str(em_status s)
{
    switch (s) {
    case EM_OK:
        return "EM_OK";
    case EM_EINVAL:
        return "EM_EINVAL";
    case EM_ENOMEM:
        return "EM_ENOMEM";
    case EM_ENOSPC:
        return "EM_ENOSPC";
    case EM_EDEVICE:
        return "EM_EDEVICE";
    case EM_EPROTO:
        return "EM_EPROTO";
    case EM_ETIMEDOUT:
        return "EM_ETIMEDOUT";
    case EM_ECANCELED:
        return "EM_ECANCELED";
    case EM_EUNSUPPORTED:
        return "EM_EUNSUPPORTED";
    case EM_EIO:
        return "EM_EIO";
    case EM_EUNAVAILABLE:
        return "EM_EUNAVAILABLE";
    }
    return "EM_UNKNOWN";
}

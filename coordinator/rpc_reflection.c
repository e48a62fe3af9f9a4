/* Server reflection answers (see rpc_reflection.h). Our .proto files import nothing, so a file's
 * answer is that file alone (no dependencies to add). */
#include "coordinator/rpc_reflection.h"

#include <stdio.h>
#include <string.h>

#include "common/assert.h"
#include "coordinator/reflection_index.h"
#include "proto/grpc/reflection/v1/reflection.pb-c.h"
#include "proto/public_descriptors.h"
#include "rpc/rpc_strings.h"
#include "rpc/rpc_util.h"

#define MAX_FILES 8

typedef Grpc__Reflection__V1__ServerReflectionRequest refl_req;
typedef Grpc__Reflection__V1__ServerReflectionResponse refl_resp;

/* Listed by list_services (v1alpha answers too, but is not listed: a client that asks for the
 * file of every listed service would find no grpc.reflection.v1alpha file). */
static const char *const k_services[] = {"emserve.v1.Emserve", "grpc.health.v1.Health",
                                         "grpc.reflection.v1.ServerReflection"};
#define N_SERVICES ((int)(sizeof k_services / sizeof k_services[0]))

/* Everything a response points to, on the caller's stack. */
typedef struct refl_parts {
    Grpc__Reflection__V1__FileDescriptorResponse fd;
    ProtobufCBinaryData file;
    Grpc__Reflection__V1__ListServiceResponse ls;
    Grpc__Reflection__V1__ServiceResponse sv[N_SERVICES];
    Grpc__Reflection__V1__ServiceResponse *svp[N_SERVICES];
    Grpc__Reflection__V1__ExtensionNumberResponse ext;
    Grpc__Reflection__V1__ErrorResponse err;
    char msg[320];
} refl_parts;

/* An ErrorResponse with pt->msg as its message. */
static void set_error(refl_resp *r, refl_parts *pt, int code)
{
    pt->err = (Grpc__Reflection__V1__ErrorResponse)GRPC__REFLECTION__V1__ERROR_RESPONSE__INIT;
    pt->err.error_code = code;
    pt->err.error_message = pt->msg;
    r->message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
    r->error_response = &pt->err;
}

static void not_found(refl_resp *r, refl_parts *pt, const char *what, const char *name)
{
    snprintf(pt->msg, sizeof pt->msg, "%s '%.256s' not found", what, name);
    set_error(r, pt, GRPC_STATUS_NOT_FOUND);
}

static void set_file(refl_resp *r, refl_parts *pt, const refl_file *f)
{
    pt->fd = (Grpc__Reflection__V1__FileDescriptorResponse)
        GRPC__REFLECTION__V1__FILE_DESCRIPTOR_RESPONSE__INIT;
    pt->file = (ProtobufCBinaryData){f->len, (uint8_t *)f->data};
    pt->fd.n_file_descriptor_proto = 1;
    pt->fd.file_descriptor_proto = &pt->file;
    r->message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
    r->file_descriptor_response = &pt->fd;
}

static void set_services(refl_resp *r, refl_parts *pt)
{
    pt->ls = (Grpc__Reflection__V1__ListServiceResponse)
        GRPC__REFLECTION__V1__LIST_SERVICE_RESPONSE__INIT;
    for (int i = 0; i < N_SERVICES; i++) {
        pt->sv[i] =
            (Grpc__Reflection__V1__ServiceResponse)GRPC__REFLECTION__V1__SERVICE_RESPONSE__INIT;
        pt->sv[i].name = (char *)k_services[i];
        pt->svp[i] = &pt->sv[i];
    }
    pt->ls.n_service = N_SERVICES;
    pt->ls.service = pt->svp;
    r->message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
    r->list_services_response = &pt->ls;
}

/* The file named name (by_name) or declaring the symbol name, or NULL. */
static const refl_file *find(const refl_file *files, int n, const char *name, int by_name)
{
    for (int i = 0; i < n; i++)
        if (by_name ? refl_file_named(&files[i], name) : refl_file_declares(&files[i], name))
            return &files[i];
    return NULL;
}

/* Our messages declare no extensions: a known type has none, anything else is not found. */
static void set_extensions(refl_resp *r, refl_parts *pt, const refl_file *files, int n,
                           const char *type)
{
    if (find(files, n, type, 0) == NULL) {
        not_found(r, pt, "type", type);
        return;
    }
    pt->ext = (Grpc__Reflection__V1__ExtensionNumberResponse)
        GRPC__REFLECTION__V1__EXTENSION_NUMBER_RESPONSE__INIT;
    pt->ext.base_type_name = (char *)type;
    r->message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE;
    r->all_extension_numbers_response = &pt->ext;
}

static grpc_byte_buffer *answer(refl_req *rq)
{
    refl_file files[MAX_FILES];
    int n = 0;
    em_status st = refl_set_files(proto_public_descriptors, proto_public_descriptors_len, files,
                                  MAX_FILES, &n);
    EM_ASSERT(st == EM_OK); /* built into the binary by proto/BUILD */
    refl_parts pt;
    refl_resp r = GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__INIT;
    r.valid_host = rq->host;
    r.original_request = rq;
    const refl_file *f;
    switch (rq->message_request_case) {
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
        set_services(&r, &pt);
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
        f = find(files, n, rq->file_by_filename, 1);
        if (f)
            set_file(&r, &pt, f);
        else
            not_found(&r, &pt, "file", rq->file_by_filename);
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
        f = find(files, n, rq->file_containing_symbol, 0);
        if (f)
            set_file(&r, &pt, f);
        else
            not_found(&r, &pt, "symbol", rq->file_containing_symbol);
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
        not_found(&r, &pt, "extension of", rq->file_containing_extension->containing_type);
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
        set_extensions(&r, &pt, files, n, rq->all_extension_numbers_of_type);
        break;
    default:
        snprintf(pt.msg, sizeof pt.msg, "no message_request set");
        set_error(&r, &pt, GRPC_STATUS_INVALID_ARGUMENT);
        break;
    }
    return rpc_pack(&r.base);
}

grpc_byte_buffer *coord_reflection_answer(grpc_byte_buffer *req, char *why, size_t whylen)
{
    why[0] = 0;
    ProtobufCMessage *m = rpc_unpack_checked(
        req, &grpc__reflection__v1__server_reflection_request__descriptor, why, whylen);
    if (m == NULL) {
        if (!why[0])
            snprintf(why, whylen, "malformed ServerReflectionRequest");
        return NULL;
    }
    grpc_byte_buffer *bb = answer((refl_req *)m);
    protobuf_c_message_free_unpacked(m, NULL);
    return bb;
}

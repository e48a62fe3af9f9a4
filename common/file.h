/* Whole-file reading for the command-line tools. */
#pragma once
#include <stddef.h>

#include "common/status.h"

/* Reads all bytes of path into a malloc'd buffer (NUL-terminated past *len; the bytes may
 * contain NULs). EM_EIO with errno set when the file cannot be read, EM_ENOMEM. */
em_status em_read_file(const char *path, char **data, size_t *len);

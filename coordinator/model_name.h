/* The served model's name for GetModelInfo: general.name of its GGUF, else its file name without
 * the directory and ".gguf". */
#pragma once
#include <stddef.h>

#include "model/model.h"

void coord_model_name(const model *m, const char *path, char *out, size_t cap);

/* PLACEHOLDER until the quantization module lands: no head is ever quantized yet
 * (qstate stays NULL), so only ems_quant_free is reachable. */
#include "ems/quant.h"

#include <stdlib.h>

void ems_quant_free(void *qstate) { free(qstate); }
em_status ems_quant_on_append(ems_head *h) { return EM_EUNSUPPORTED; }
void ems_quant_on_compact(ems_head *h, const int *keep, int n) {}
em_status ems_quant_view(ems_head *h, const float **k, const float **v) { return EM_EUNSUPPORTED; }
uint64_t ems_quant_bytes(const ems_head *h) { return 0; }

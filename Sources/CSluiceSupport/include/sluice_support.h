#ifndef SLUICE_SUPPORT_H
#define SLUICE_SUPPORT_H

#include <stddef.h>
#include <stdint.h>
#include "sluice_failpoints.h"

/// CRC32C (Castagnoli) of `length` bytes, continuing from `crc` (0 to start).
/// Uses the SSE4.2 instruction when the CPU has it, a table otherwise.
uint32_t sluice_crc32c(uint32_t crc, const void *data, size_t length);

#endif

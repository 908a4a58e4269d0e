#ifndef SLUICE_SUPPORT_H
#define SLUICE_SUPPORT_H

#include <stddef.h>
#include <stdint.h>
#include "sluice_failpoints.h"

/// CRC32C (Castagnoli) of `length` bytes, continuing from `crc` (0 to start).
/// Uses the SSE4.2 instruction when the CPU has it, a table otherwise.
uint32_t sluice_crc32c(uint32_t crc, const void *data, size_t length);

/// HMAC-SHA256 of `length` bytes into `out`, given the SHA-256 states after the key's inner and
/// outer pad blocks (libcrypto's SHA-256, which uses the CPU's SHA instructions when present).
void sluice_hmac_sha256(const uint32_t inner[8], const uint32_t outer[8], const void *message, size_t length,
                        uint8_t out[32]);
// The same MAC as 64 lowercase hexadecimal digits at `out` (the `hash` mask's column value).
void sluice_hmac_sha256_hex(const uint32_t inner[8], const uint32_t outer[8], const void *message, size_t length,
                            uint8_t out[64]);

#endif

// HMAC-SHA256 of one value from precomputed pad states, with OpenSSL's SHA-256 block function
// (SHA-NI or AVX where the CPU has them): the `hash` mask's per-value cost.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>
#include <string.h>
#include "sluice_support.h"

static void resume(SHA256_CTX *context, const uint32_t state[8]) {
    memset(context, 0, sizeof *context);
    memcpy(context->h, state, 32);
    context->Nl = 512;  // the pad block, already hashed
    context->md_len = SHA256_DIGEST_LENGTH;
}

static void store_big_endian(unsigned char *out, const SHA_LONG h[8]) {
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (unsigned char)(h[i] >> 24);
        out[4 * i + 1] = (unsigned char)(h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(h[i] >> 8);
        out[4 * i + 3] = (unsigned char)h[i];
    }
}

// The last block of a message of `length` bytes (at most 55) after one already hashed block:
// the bytes, 0x80, zeros, and the total length in bits, big-endian.
static void final_block(unsigned char block[64], size_t length) {
    block[length] = 0x80;
    memset(block + length + 1, 0, 55 - length);
    uint64_t bits = (uint64_t)(64 + length) * 8;
    for (int i = 0; i < 8; i++) block[63 - i] = (unsigned char)(bits >> (8 * i));
}

void sluice_hmac_sha256(const uint32_t inner[8], const uint32_t outer[8], const void *message, size_t length,
                        uint8_t out[32]) {
    SHA256_CTX context;
    unsigned char block[64];
    if (length <= 55) {
        // Most values fit one block: two calls of the block function on blocks padded here.
        memcpy(context.h, inner, 32);
        if (length > 0) memcpy(block, message, length);
        final_block(block, length);
        SHA256_Transform(&context, block);
        store_big_endian(block, context.h);
        final_block(block, SHA256_DIGEST_LENGTH);
        memcpy(context.h, outer, 32);
        SHA256_Transform(&context, block);
        store_big_endian(out, context.h);
        return;
    }
    resume(&context, inner);
    SHA256_Update(&context, message, length);
    SHA256_Final(block, &context);
    resume(&context, outer);
    SHA256_Update(&context, block, SHA256_DIGEST_LENGTH);
    SHA256_Final(out, &context);
}

void sluice_hmac_sha256_hex(const uint32_t inner[8], const uint32_t outer[8], const void *message, size_t length,
                            uint8_t out[64]) {
    static const char digits[] = "0123456789abcdef";
    uint8_t mac[32];
    sluice_hmac_sha256(inner, outer, message, length, mac);
    for (int i = 0; i < 32; i++) {
        out[2 * i] = (uint8_t)digits[mac[i] >> 4];
        out[2 * i + 1] = (uint8_t)digits[mac[i] & 15];
    }
}

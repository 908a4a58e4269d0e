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

void sluice_hmac_sha256(const uint32_t inner[8], const uint32_t outer[8], const void *message, size_t length,
                        uint8_t out[32]) {
    SHA256_CTX context;
    unsigned char digest[SHA256_DIGEST_LENGTH];
    resume(&context, inner);
    SHA256_Update(&context, message, length);
    SHA256_Final(digest, &context);
    resume(&context, outer);
    SHA256_Update(&context, digest, sizeof digest);
    SHA256_Final(out, &context);
}

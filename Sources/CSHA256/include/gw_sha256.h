#ifndef GW_SHA256_H
#define GW_SHA256_H
#include <stddef.h>
#include <stdint.h>

/* SHA-256 with the x86 SHA extensions, its state on the caller's stack (no
   allocation). Use only where gw_sha256_available() says so; elsewhere the
   gateway uses swift-crypto's SHA256. */
typedef struct {
    uint32_t h[8];
    uint64_t length;     /* bytes hashed so far */
    uint8_t block[64];   /* the partial block */
} gw_sha256_ctx;

/* 1 when this CPU has the SHA extensions, SSSE3 and SSE4.1 (x86-64 only). */
int gw_sha256_available(void);
void gw_sha256_init(gw_sha256_ctx *ctx);
void gw_sha256_update(gw_sha256_ctx *ctx, const void *data, size_t count);
/* Writes the 32-byte digest and wipes the context. */
void gw_sha256_final(gw_sha256_ctx *ctx, uint8_t out[32]);

#endif

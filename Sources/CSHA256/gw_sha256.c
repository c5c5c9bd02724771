#include "gw_sha256.h"
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

int gw_sha256_available(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int ssse3 = (c >> 9) & 1, sse41 = (c >> 19) & 1;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    int sha = (b >> 29) & 1;
    return ssse3 && sse41 && sha;
}

static const uint32_t K[64] __attribute__((aligned(16))) = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

/* `blocks` 64-byte blocks: Intel's sequence for the SHA extensions (two
   rounds per sha256rnds2; the message schedule by sha256msg1/sha256msg2),
   written as a loop over the sixteen groups of four rounds. */
__attribute__((target("sha,ssse3,sse4.1")))
static void compress(uint32_t h[8], const uint8_t *data, size_t blocks) {
    const __m128i swap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i t = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[0]), 0xB1);  /* CDAB */
    __m128i s1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[4]), 0x1B); /* EFGH */
    __m128i s0 = _mm_alignr_epi8(t, s1, 8);                                        /* ABEF */
    s1 = _mm_blend_epi16(s1, t, 0xF0);                                             /* CDGH */
    while (blocks--) {
        const __m128i save0 = s0, save1 = s1;
        __m128i w[4];
        for (int i = 0; i < 4; i++) w[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 16 * i)), swap);
        _Pragma("clang loop unroll(full)")
        for (int g = 0; g < 16; g++) {
            __m128i m = _mm_add_epi32(w[g & 3], _mm_load_si128((const __m128i *)&K[4 * g]));
            s1 = _mm_sha256rnds2_epu32(s1, s0, m);
            m = _mm_shuffle_epi32(m, 0x0E);
            s0 = _mm_sha256rnds2_epu32(s0, s1, m);
            /* The next group's words (from the four before it), then the
               first half of a later group's from this one. */
            if (g >= 3 && g <= 14) {
                __m128i x = _mm_add_epi32(w[(g + 1) & 3], _mm_alignr_epi8(w[g & 3], w[(g - 1) & 3], 4));
                w[(g + 1) & 3] = _mm_sha256msg2_epu32(x, w[g & 3]);
            }
            if (g >= 1 && g <= 12) w[(g - 1) & 3] = _mm_sha256msg1_epu32(w[(g - 1) & 3], w[g & 3]);
        }
        s0 = _mm_add_epi32(s0, save0);
        s1 = _mm_add_epi32(s1, save1);
        data += 64;
    }
    t = _mm_shuffle_epi32(s0, 0x1B);  /* FEBA */
    s1 = _mm_shuffle_epi32(s1, 0xB1); /* DCHG */
    _mm_storeu_si128((__m128i *)&h[0], _mm_blend_epi16(t, s1, 0xF0)); /* DCBA */
    _mm_storeu_si128((__m128i *)&h[4], _mm_alignr_epi8(s1, t, 8));    /* HGFE */
}
#else
int gw_sha256_available(void) { return 0; }
static void compress(uint32_t h[8], const uint8_t *data, size_t blocks) { (void)h; (void)data; (void)blocks; __builtin_trap(); }
#endif

void gw_sha256_init(gw_sha256_ctx *ctx) {
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(ctx->h, iv, sizeof iv);
    ctx->length = 0;
}

void gw_sha256_update(gw_sha256_ctx *ctx, const void *data, size_t count) {
    if (count == 0) return; /* `data` may then be NULL, which memcpy must not see */
    const uint8_t *p = data;
    size_t used = (size_t)(ctx->length & 63);
    ctx->length += count;
    if (used) {
        size_t take = 64 - used < count ? 64 - used : count;
        memcpy(ctx->block + used, p, take);
        p += take;
        count -= take;
        if (used + take < 64) return;
        compress(ctx->h, ctx->block, 1);
    }
    if (count >= 64) {
        compress(ctx->h, p, count / 64);
        p += count & ~(size_t)63;
        count &= 63;
    }
    if (count) memcpy(ctx->block, p, count);
}

void gw_sha256_final(gw_sha256_ctx *ctx, uint8_t out[32]) {
    uint64_t bits = ctx->length * 8;
    size_t used = (size_t)(ctx->length & 63);
    ctx->block[used++] = 0x80;
    if (used > 56) {
        memset(ctx->block + used, 0, 64 - used);
        compress(ctx->h, ctx->block, 1);
        used = 0;
    }
    memset(ctx->block + used, 0, 56 - used);
    for (int i = 0; i < 8; i++) ctx->block[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
    compress(ctx->h, ctx->block, 1);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(ctx->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(ctx->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(ctx->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)ctx->h[i];
    }
    /* The state and the last block may hold secrets (an HMAC key's pads). */
    volatile uint8_t *v = (volatile uint8_t *)ctx;
    for (size_t i = 0; i < sizeof *ctx; i++) v[i] = 0;
}

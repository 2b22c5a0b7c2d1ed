// Counterpart: the kernel's crc32c (lib/crc32.c's slicing tables, arch/x86/lib/crc32-glue.c's
// use of the SSE4.2 crc32 instruction), the checksum of XFS's v5 metadata (xfs_cksum.h).
//
// Written from the definition (the Castagnoli polynomial, reflected, 0x82F63B78), not from
// the kernel: every metadata block of the volume carries a CRC32C, so the checksum is on the
// path of every snapshot and every log force and must be fast. The SSE4.2 instruction does
// 8 bytes per step; where the CPU lacks it, slicing-by-8 tables do 8 bytes per step in
// software. The convention is zlib's: the running value goes in and out un-inverted, so
// crc(crc(0, a), b) == crc(0, a ++ b), and crc(0, "123456789") == 0xE3069283.
#include <stdint.h>
#include <string.h>
#include "ciomapbase.h"

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

/// The tables of slicing-by-8: table[k][b] is the CRC of byte b followed by k zero bytes.
static uint32_t crc32c_table[8][256];

/// 1 when the CPU has SSE4.2, decided once at load.
static int crc32c_hardware = 0;

// The crc32 instruction takes three cycles and can start one a cycle, so one stream of it
// runs at a third of the CPU's rate. Long buffers go as three streams of LANE bytes at once,
// each from its own register, joined after each stride. The CRC register's step is linear,
// so the register after bytes A then B is the register after A, carried through len(B) zero
// bytes, xor the register after B from zero; carrying through n zero bytes is itself linear
// in the register, a multiplication by x^(8n) modulo the polynomial, which the tables below
// hold byte-sliced for n = LANE and 2 * LANE. LANE makes one stride of a 4 KiB block's bytes
// but the 8 around its CRC field.
#define CRC32C_LANE 1360
static uint32_t crc32c_shift1[4][256];
static uint32_t crc32c_shift2[4][256];

/// The register `c` carried through `n` zero bytes, a byte at a time.
static uint32_t crc32c_zeros(uint32_t c, size_t n) {
    while (n-- > 0) c = (c >> 8) ^ crc32c_table[0][c & 0xFF];
    return c;
}

/// Builds `table` for carrying a register through `n` zero bytes: its value for each bit,
/// then every byte of each of the register's four bytes as the xor of its bits'.
static void crc32c_build_shift(uint32_t table[4][256], size_t n) {
    uint32_t bit[32];
    for (int i = 0; i < 32; i++) bit[i] = crc32c_zeros(1u << i, n);
    for (int k = 0; k < 4; k++) {
        for (uint32_t b = 0; b < 256; b++) {
            uint32_t v = 0;
            for (int j = 0; j < 8; j++) if (b & (1u << j)) v ^= bit[8 * k + j];
            table[k][b] = v;
        }
    }
}

static inline uint32_t crc32c_shift(uint32_t table[4][256], uint32_t c) {
    return table[0][c & 0xFF] ^ table[1][(c >> 8) & 0xFF] ^ table[2][(c >> 16) & 0xFF] ^ table[3][c >> 24];
}

// Built at load time (before any Swift code runs), so readers never race the writer and no
// lock or once-flag is needed on the hot path.
__attribute__((constructor)) static void crc32c_init(void) {
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int i = 0; i < 8; i++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc32c_table[0][b] = c;
    }
    for (uint32_t b = 0; b < 256; b++) {
        for (int k = 1; k < 8; k++) {
            uint32_t prev = crc32c_table[k - 1][b];
            crc32c_table[k][b] = (prev >> 8) ^ crc32c_table[0][prev & 0xFF];
        }
    }
    crc32c_build_shift(crc32c_shift1, CRC32C_LANE);
    crc32c_build_shift(crc32c_shift2, 2 * CRC32C_LANE);
#if defined(__x86_64__)
    __builtin_cpu_init();
    crc32c_hardware = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#endif
}

uint32_t ciomap_crc32c_software(uint32_t crc, const void *data, size_t length) {
    const uint8_t *p = data;
    uint32_t c = ~crc;
    // Byte steps until the pointer is 8-aligned, so the word loads below are aligned.
    while (length > 0 && ((uintptr_t)p & 7) != 0) {
        c = (c >> 8) ^ crc32c_table[0][(c ^ *p++) & 0xFF];
        length--;
    }
    while (length >= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        lo = __builtin_bswap32(lo);
        hi = __builtin_bswap32(hi);
#endif
        lo ^= c;
        c = crc32c_table[7][lo & 0xFF] ^ crc32c_table[6][(lo >> 8) & 0xFF] ^ crc32c_table[5][(lo >> 16) & 0xFF] ^
            crc32c_table[4][lo >> 24] ^ crc32c_table[3][hi & 0xFF] ^ crc32c_table[2][(hi >> 8) & 0xFF] ^
            crc32c_table[1][(hi >> 16) & 0xFF] ^ crc32c_table[0][hi >> 24];
        p += 8;
        length -= 8;
    }
    while (length > 0) {
        c = (c >> 8) ^ crc32c_table[0][(c ^ *p++) & 0xFF];
        length--;
    }
    return ~c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const void *data, size_t length) {
    const uint8_t *p = data;
    uint64_t c = ~crc;
    while (length > 0 && ((uintptr_t)p & 7) != 0) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        length--;
    }
    while (length >= 3 * CRC32C_LANE) {
        uint64_t a = c, b = 0, d = 0;
        for (size_t i = 0; i < CRC32C_LANE; i += 8) {
            uint64_t wa, wb, wd;
            memcpy(&wa, p + i, 8);
            memcpy(&wb, p + CRC32C_LANE + i, 8);
            memcpy(&wd, p + 2 * CRC32C_LANE + i, 8);
            a = _mm_crc32_u64(a, wa);
            b = _mm_crc32_u64(b, wb);
            d = _mm_crc32_u64(d, wd);
        }
        c = crc32c_shift(crc32c_shift2, (uint32_t)a) ^ crc32c_shift(crc32c_shift1, (uint32_t)b) ^ (uint32_t)d;
        p += 3 * CRC32C_LANE;
        length -= 3 * CRC32C_LANE;
    }
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        c = _mm_crc32_u64(c, word);
        p += 8;
        length -= 8;
    }
    while (length > 0) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        length--;
    }
    return ~(uint32_t)c;
}
#endif

int ciomap_crc32c_hardware_available(void) { return crc32c_hardware; }

uint32_t ciomap_crc32c_hardware(uint32_t crc, const void *data, size_t length) {
#if defined(__x86_64__)
    if (crc32c_hardware) return crc32c_sse42(crc, data, length);
#endif
    return ciomap_crc32c_software(crc, data, length);
}

uint32_t ciomap_crc32c(uint32_t crc, const void *data, size_t length) {
#if defined(__x86_64__)
    if (crc32c_hardware) return crc32c_sse42(crc, data, length);
#endif
    return ciomap_crc32c_software(crc, data, length);
}

/* fwd_util.h - CRC-32 (section 2.1), versions (section 1.7), hex text. */
#ifndef FWD_UTIL_H
#define FWD_UTIL_H
#include <stddef.h>
#include <stdint.h>

/* Running CRC-32/ISO-HDLC: start with crc = 0, feed pieces, the result is the CRC. */
uint32_t fwd_crc32(uint32_t crc, const uint8_t *p, size_t n);

/* Strict SemVer 2.0.0 without build metadata, at most 64 bytes (section 1.7). */
int fwd_version_valid(const char *s, size_t n);
/* <0, 0, >0 by SemVer precedence (section 1.7.2); both must be valid. */
/* The same for a NUL-terminated string. */
int fwd_version_valid_str(const char *s);
int fwd_version_cmp(const char *a, size_t an, const char *b, size_t bn);

/* 64 lowercase hex digits -> 32 bytes (and any even length); 0 on success. */
int fwd_hex_decode(const char *s, size_t n, uint8_t *out);
void fwd_hex_encode(const uint8_t *b, size_t n, char *out); /* writes 2n chars + NUL */

#endif

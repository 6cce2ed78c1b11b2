/* fwd_util.c - see fwd_util.h. */
#include "fwd_util.h"

/* Nibble table: 64 bytes of flash instead of 1 KiB, fast enough for verify on an MCU. */
static const uint32_t crc_nibble[16] = {
  0x00000000u, 0x1db71064u, 0x3b6e20c8u, 0x26d930acu, 0x76dc4190u, 0x6b6b51f4u, 0x4db26158u, 0x5005713cu,
  0xedb88320u, 0xf00f9344u, 0xd6d6a3e8u, 0xcb61b38cu, 0x9b64c2b0u, 0x86d3d2d4u, 0xa00ae278u, 0xbdbdf21cu,
};

uint32_t fwd_crc32(uint32_t crc, const uint8_t *p, size_t n) {
  crc = ~crc;
  while (n--) {
    crc ^= *p++;
    crc = (crc >> 4) ^ crc_nibble[crc & 15];
    crc = (crc >> 4) ^ crc_nibble[crc & 15];
  }
  return ~crc;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_ident(char c) { return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-'; }

/* A numeric identifier without leading zero: returns its length, 0 if none. */
static size_t numeric(const char *s, size_t n) {
  size_t i = 0;
  while (i < n && is_digit(s[i])) i++;
  if (i == 0 || (i > 1 && s[0] == '0')) return 0;
  return i;
}

int fwd_version_valid(const char *s, size_t n) {
  size_t i = 0, k, part;
  if (n == 0 || n > 64) return 0;
  for (part = 0; part < 3; part++) {
    k = numeric(s + i, n - i);
    if (!k) return 0;
    i += k;
    if (part < 2) {
      if (i >= n || s[i] != '.') return 0;
      i++;
    }
  }
  if (i == n) return 1;
  if (s[i] != '-') return 0; /* '+' build metadata refused (section 1.7.1) */
  i++;
  for (;;) {
    size_t start = i, alnum = 0;
    while (i < n && is_ident(s[i])) { if (!is_digit(s[i])) alnum = 1; i++; }
    if (i == start) return 0;
    if (!alnum && i - start > 1 && s[start] == '0') return 0;
    if (i == n) return 1;
    if (s[i] != '.') return 0;
    i++;
  }
}

int fwd_version_valid_str(const char *s) {
  size_t n = 0;
  while (s[n] && n <= 64) n++;
  return fwd_version_valid(s, n);
}

/* Compare two numeric strings without leading zeros. */
static int cmp_num(const char *a, size_t an, const char *b, size_t bn) {
  size_t i;
  if (an != bn) return an < bn ? -1 : 1;
  for (i = 0; i < an; i++) if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
  return 0;
}


static int all_digits(const char *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) if (!is_digit(s[i])) return 0;
  return n > 0;
}

int fwd_version_cmp(const char *a, size_t an, const char *b, size_t bn) {
  size_t i = 0, j = 0, part;
  int c;
  for (part = 0; part < 3; part++) {
    size_t ka = numeric(a + i, an - i), kb = numeric(b + j, bn - j);
    c = cmp_num(a + i, ka, b + j, kb);
    if (c) return c;
    i += ka + 1;
    j += kb + 1;
  }
  /* i, j now point past the '-' (or beyond the end when there is no pre-release) */
  if (i > an && j > bn) return 0;
  if (i > an) return 1;  /* a release is above its pre-releases */
  if (j > bn) return -1;
  for (;;) {
    size_t ka = 0, kb = 0;
    int da, db;
    while (i + ka < an && a[i + ka] != '.') ka++;
    while (j + kb < bn && b[j + kb] != '.') kb++;
    da = all_digits(a + i, ka);
    db = all_digits(b + j, kb);
    if (da && db) c = cmp_num(a + i, ka, b + j, kb);
    else if (da) c = -1;
    else if (db) c = 1;
    else {
      size_t m = ka < kb ? ka : kb, x;
      c = 0;
      for (x = 0; x < m && !c; x++) if (a[i + x] != b[j + x]) c = (unsigned char)a[i + x] < (unsigned char)b[j + x] ? -1 : 1;
      if (!c && ka != kb) c = ka < kb ? -1 : 1;
    }
    if (c) return c;
    i += ka + 1;
    j += kb + 1;
    if (i > an && j > bn) return 0;
    if (i > an) return -1; /* fewer identifiers: lower */
    if (j > bn) return 1;
  }

}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1; /* lowercase only (section 1.4.7) */
}

int fwd_hex_decode(const char *s, size_t n, uint8_t *out) {
  size_t i;
  if (n % 2) return 1;
  for (i = 0; i < n; i += 2) {
    int h = hexval(s[i]), l = hexval(s[i + 1]);
    if (h < 0 || l < 0) return 1;
    out[i / 2] = (uint8_t)(h << 4 | l);
  }
  return 0;
}

void fwd_hex_encode(const uint8_t *b, size_t n, char *out) {
  static const char d[] = "0123456789abcdef";
  size_t i;
  for (i = 0; i < n; i++) { out[2 * i] = d[b[i] >> 4]; out[2 * i + 1] = d[b[i] & 15]; }
  out[2 * n] = 0;
}

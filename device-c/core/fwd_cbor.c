/* fwd_cbor.c - see fwd_cbor.h (docs/protocol.md section 1.4). */
#include "fwd_cbor.h"
#include <string.h>

void fwd_cbor_reader_init(fwd_cbor_reader *r, const uint8_t *buf, size_t len) {
  r->p = buf;
  r->end = buf + len;
  r->err = 0;
}

static int fail(fwd_cbor_reader *r) {
  r->err = 1;
  return FWD_CBOR_ERR;
}

int fwd_cbor_read(fwd_cbor_reader *r, fwd_cbor_item *it) {
  uint8_t ib, ai;
  uint64_t v = 0;
  unsigned n = 0, i;
  if (r->err || r->p >= r->end) return fail(r);
  ib = *r->p++;
  it->major = (uint8_t)(ib >> 5);
  it->fbits = 0;
  it->ptr = 0;
  ai = ib & 0x1f;
  if (ai < 24) v = ai;
  else if (ai == 24) n = 1;
  else if (ai == 25) n = 2;
  else if (ai == 26) n = 4;
  else if (ai == 27) n = 8;
  else return fail(r); /* 28..30 reserved, 31 indefinite (section 1.4.4) */
  if ((size_t)(r->end - r->p) < n) return fail(r);
  for (i = 0; i < n; i++) v = (v << 8) | *r->p++;
  it->raw = v;
  if (it->major == FWD_SIMPLE) {
    if (ai == 20 || ai == 21) { it->arg = ai; return 0; }
    if (ai == 25 || ai == 26 || ai == 27) { it->fbits = (uint8_t)(n * 8); it->arg = 0; return 0; }
    return fail(r); /* null, undefined and other simple values (section 1.4.8) */
  }
  if (it->major == FWD_TAG || it->major == FWD_NEG) return fail(r); /* section 1.4.8, 1.4.5 */
  /* shortest heads only, never the 8-byte argument (section 1.4.5) */
  if (n == 8) return fail(r);
  if ((n == 1 && v < 24) || (n == 2 && v < 0x100) || (n == 4 && v < 0x10000)) return fail(r);
  it->arg = (uint32_t)v;
  if (it->major == FWD_BYTES || it->major == FWD_TEXT) {
    if ((size_t)(r->end - r->p) < it->arg) return fail(r);
    it->ptr = r->p;
    r->p += it->arg;
  }
  return 0;
}

static int skip_depth(fwd_cbor_reader *r, int depth) {
  fwd_cbor_item it;
  uint32_t i, n;
  if (depth > FWD_CBOR_MAX_DEPTH) return fail(r);
  if (fwd_cbor_read(r, &it)) return FWD_CBOR_ERR;
  if (it.major == FWD_ARRAY || it.major == FWD_MAP) {
    n = it.major == FWD_MAP ? it.arg * 2u : it.arg;
    if (it.major == FWD_MAP && it.arg > 0x7fffffffu) return fail(r);
    for (i = 0; i < n; i++) if (skip_depth(r, depth + 1)) return FWD_CBOR_ERR;
  }
  return 0;
}

int fwd_cbor_skip(fwd_cbor_reader *r) { return skip_depth(r, 1); }

int fwd_cbor_end(const fwd_cbor_reader *r) { return r->err || r->p != r->end; }

/* Integral, non-negative, finite, <= 2^53 - 1, from a uint or a half/single/double float,
 * by looking at the bits (no floating-point arithmetic: none is linked into an MCU build). */
int fwd_cbor_number_u53(const fwd_cbor_item *it, uint64_t *out) {
  uint64_t mant;
  int exp, ebits, mbits, bias;
  if (it->major == FWD_UINT) { *out = it->arg; return 0; }
  if (it->major != FWD_SIMPLE || it->fbits == 0) return 1;
  if (it->fbits == 16) { ebits = 5; mbits = 10; }
  else if (it->fbits == 32) { ebits = 8; mbits = 23; }
  else { ebits = 11; mbits = 52; }
  bias = (1 << (ebits - 1)) - 1;
  mant = it->raw & ((1ull << mbits) - 1);
  exp = (int)((it->raw >> mbits) & ((1u << ebits) - 1));
  if (exp == (1 << ebits) - 1) return 1;             /* NaN, infinity */
  if (exp == 0) {                                    /* zero or subnormal */
    if (mant != 0) return 1;                          /* a fraction */
    *out = 0;
    return 0;
  }
  if (it->raw >> (it->fbits - 1)) return 1;         /* negative */
  mant |= 1ull << mbits;
  exp -= bias + mbits;                               /* value = mant * 2^exp */
  if (exp < 0) {
    if (-exp > mbits || (mant & ((1ull << -exp) - 1))) return 1; /* a fraction */
    mant >>= -exp;
  } else {
    if (exp + mbits + 1 > 53) return 1;              /* >= 2^53 */
    mant <<= exp;
  }
  if (mant > 0x1fffffffffffffull) return 1;
  *out = mant;
  return 0;
}

void fwd_cbor_writer_init(fwd_cbor_writer *w, uint8_t *buf, size_t cap) {
  w->buf = buf;
  w->cap = cap;
  w->len = 0;
  w->err = 0;
}

static void put(fwd_cbor_writer *w, const uint8_t *b, size_t n) {
  if (w->err || w->cap - w->len < n) { w->err = FWD_CBOR_FULL; return; }
  memcpy(w->buf + w->len, b, n);
  w->len += n;
}

void fwd_cbor_head(fwd_cbor_writer *w, uint8_t major, uint32_t v) {
  uint8_t h[5];
  size_t n;
  uint8_t m = (uint8_t)(major << 5);
  if (v < 24) { h[0] = (uint8_t)(m | v); n = 1; }
  else if (v < 0x100) { h[0] = m | 24; h[1] = (uint8_t)v; n = 2; }
  else if (v < 0x10000) { h[0] = m | 25; h[1] = (uint8_t)(v >> 8); h[2] = (uint8_t)v; n = 3; }
  else { h[0] = m | 26; h[1] = (uint8_t)(v >> 24); h[2] = (uint8_t)(v >> 16); h[3] = (uint8_t)(v >> 8); h[4] = (uint8_t)v; n = 5; }
  put(w, h, n);
}

void fwd_cbor_uint(fwd_cbor_writer *w, uint32_t v) { fwd_cbor_head(w, FWD_UINT, v); }
void fwd_cbor_map(fwd_cbor_writer *w, uint32_t pairs) { fwd_cbor_head(w, FWD_MAP, pairs); }
void fwd_cbor_array(fwd_cbor_writer *w, uint32_t n) { fwd_cbor_head(w, FWD_ARRAY, n); }
void fwd_cbor_textn(fwd_cbor_writer *w, const char *s, size_t n) {
  fwd_cbor_head(w, FWD_TEXT, (uint32_t)n);
  put(w, (const uint8_t *)s, n);
}
void fwd_cbor_text(fwd_cbor_writer *w, const char *s) { fwd_cbor_textn(w, s, strlen(s)); }
void fwd_cbor_bytes(fwd_cbor_writer *w, const uint8_t *b, size_t n) {
  fwd_cbor_head(w, FWD_BYTES, (uint32_t)n);
  put(w, b, n);
}
void fwd_cbor_bool(fwd_cbor_writer *w, int v) {
  uint8_t b = v ? 0xf5 : 0xf4;
  put(w, &b, 1);
}

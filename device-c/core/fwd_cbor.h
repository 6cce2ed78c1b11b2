/*
 * fwd_cbor.h - strict CBOR (RFC 8949) reader and writer for the message set of docs/protocol.md
 * section 1.4. No allocation: the reader walks the received payload in place, the writer fills a
 * caller's buffer.
 *
 * The reader refuses (FWD_CBOR_ERR): indefinite lengths (additional information 31), reserved
 * additional information 28..30, tags (major type 6), non-shortest heads, the 8-byte argument,
 * negative integers and simple values other than false/true/floats, truncated items, nesting
 * deeper than FWD_CBOR_MAX_DEPTH, and (fwd_cbor_end) bytes after the one item. Section 1.4.11
 * says which of these a device MUST refuse and which it MAY.
 */
#ifndef FWD_CBOR_H
#define FWD_CBOR_H
#include <stddef.h>
#include <stdint.h>

#define FWD_CBOR_MAX_DEPTH 6

enum { FWD_CBOR_OK = 0, FWD_CBOR_ERR = 1, FWD_CBOR_FULL = 2 };

enum fwd_major { FWD_UINT = 0, FWD_NEG = 1, FWD_BYTES = 2, FWD_TEXT = 3, FWD_ARRAY = 4, FWD_MAP = 5, FWD_TAG = 6, FWD_SIMPLE = 7 };

typedef struct {
  const uint8_t *p;
  const uint8_t *end;
  int err;
} fwd_cbor_reader;

/* One head: major type and argument; for strings `ptr` points at the content. For major 7:
 * arg = 20 false, 21 true, or (float) the raw bits with `fbits` = 16, 32 or 64. */
typedef struct {
  uint8_t major;
  uint8_t fbits;
  uint32_t arg;
  uint64_t raw;
  const uint8_t *ptr;
} fwd_cbor_item;

void fwd_cbor_reader_init(fwd_cbor_reader *r, const uint8_t *buf, size_t len);
/* Read one head (and for strings, step over the content). 0 on success. */
int fwd_cbor_read(fwd_cbor_reader *r, fwd_cbor_item *it);
/* Skip one whole item (with nested items). */
int fwd_cbor_skip(fwd_cbor_reader *r);
/* 0 when the reader consumed every byte without error. */
int fwd_cbor_end(const fwd_cbor_reader *r);
/* A number (section 1.4.6) as a non-negative integer <= 2^53 - 1: 0 on success. */
int fwd_cbor_number_u53(const fwd_cbor_item *it, uint64_t *out);

typedef struct {
  uint8_t *buf;
  size_t cap;
  size_t len;
  int err;
} fwd_cbor_writer;

void fwd_cbor_writer_init(fwd_cbor_writer *w, uint8_t *buf, size_t cap);
void fwd_cbor_head(fwd_cbor_writer *w, uint8_t major, uint32_t arg);
void fwd_cbor_uint(fwd_cbor_writer *w, uint32_t v);
void fwd_cbor_map(fwd_cbor_writer *w, uint32_t pairs);
void fwd_cbor_array(fwd_cbor_writer *w, uint32_t n);
void fwd_cbor_text(fwd_cbor_writer *w, const char *s);
void fwd_cbor_textn(fwd_cbor_writer *w, const char *s, size_t n);
void fwd_cbor_bytes(fwd_cbor_writer *w, const uint8_t *b, size_t n);
void fwd_cbor_bool(fwd_cbor_writer *w, int v);

#endif

/*
 * fwd_msg.h - the OTA message set of docs/protocol.md section 6: decoding what the gateway sends
 * (section 1.5 order: size, CBOR, shape, type, fields) and encoding what a device sends, in the
 * key order of the spec's field tables (the order of the section 10.6 vectors).
 * Decoded text and bytes point into the received payload; nothing is copied.
 */
#ifndef FWD_MSG_H
#define FWD_MSG_H
#include <stddef.h>
#include <stdint.h>
#include "fwd_cbor.h"
#include "fwd_config.h"

#define FWD_MAX_OTA_MESSAGE 66560u /* section 1.6 */

typedef enum {
  FWD_MSG_PING, FWD_MSG_PROBE, FWD_MSG_QUERY, FWD_MSG_OFFER, FWD_MSG_CHUNK, FWD_MSG_VERIFY,
  FWD_MSG_ACTIVATE, FWD_MSG_CONFIRM, FWD_MSG_ABORT, FWD_MSG_TASKS
} fwd_msg_type;

/* Outcome of a decode, as section 1.5 counts them. */
typedef enum { FWD_DEC_OK = 0, FWD_DEC_SIZE, FWD_DEC_CBOR, FWD_DEC_SHAPE, FWD_DEC_TYPE, FWD_DEC_FIELD } fwd_dec_result;

typedef struct {
  const char *p;
  uint16_t n;
} fwd_str;

typedef struct {
  fwd_msg_type type;
  uint32_t sid, n, off, crc, size, crc32, chunk, seq;
  const uint8_t *data; /* ping.pad, probe.data, chunk.data */
  uint32_t data_len;
  uint8_t has_data, downgrade, force, has_sig, hw_count, task_count;
  fwd_str name, version, sha256, key_id, sig, reason;
  fwd_str hw[FWD_MAX_HW_MODELS];
  /* on a failure: the field that failed (for the console) */
  const char *bad_field;
} fwd_down;

fwd_dec_result fwd_decode_down(const uint8_t *buf, size_t len, fwd_down *m);

/* ---- device -> gateway ---- */
typedef struct {
  const char *state;      /* SlotStates */
  const char *version;    /* NULL when the slot holds nothing */
  const char *sha256_hex; /* with version */
} fwd_slot_info;

typedef struct {
  const char *hw, *version, *floor; /* floor NULL = none */
  char slot;                        /* 'a' / 'b' */
  fwd_slot_info slots[2];
  uint32_t max_chunk;
  int busy, trial;
} fwd_status_msg;

void fwd_enc_status(fwd_cbor_writer *w, const fwd_status_msg *s);
void fwd_enc_boot(fwd_cbor_writer *w, const char *version, char slot, const char *sha256_hex, int trial, int reverted, const char *reason);
void fwd_enc_pong(fwd_cbor_writer *w, uint32_t n, const uint8_t *pad, uint32_t pad_len, int has_pad);
void fwd_enc_probed(fwd_cbor_writer *w, uint32_t n, uint32_t size);
void fwd_enc_accept(fwd_cbor_writer *w, uint32_t sid, uint32_t next, uint32_t chunk, uint32_t window);
void fwd_enc_reject(fwd_cbor_writer *w, uint32_t sid, const char *code, const char *reason);
void fwd_enc_ack(fwd_cbor_writer *w, uint32_t sid, uint32_t next, const uint32_t *missing, uint32_t count);
/* The ack up to the head of `missing`; the caller then writes `count` uints. */
void fwd_enc_ack_begin(fwd_cbor_writer *w, uint32_t sid, uint32_t next, uint32_t count);
void fwd_enc_verified(fwd_cbor_writer *w, uint32_t sid, int ok, const char *code, const char *reason);
void fwd_enc_activated(fwd_cbor_writer *w, uint32_t sid, char slot);
void fwd_enc_confirmed(fwd_cbor_writer *w, const char *sha256_hex, const char *version);
void fwd_enc_aborted(fwd_cbor_writer *w, uint32_t sid);

/* The bytes a manifest signature covers (section 5.4.1), rebuilt from an offer. */
void fwd_enc_signed_bytes(fwd_cbor_writer *w, const fwd_down *offer);

#endif

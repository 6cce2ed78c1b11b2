/* fwd_msg.c - see fwd_msg.h. Clause numbers refer to docs/protocol.md. */
#include "fwd_msg.h"
#include "fwd_util.h"
#include <string.h>

/* ---------------------------------------------------------------- decoding (section 1.5) */

enum {
  K_T, K_SID, K_N, K_PAD, K_DATA, K_NAME, K_VERSION, K_HW, K_SIZE, K_CRC32, K_SHA256, K_CHUNK,
  K_DOWNGRADE, K_FORCE, K_SEQ, K_KEYID, K_SIG, K_OFF, K_CRC, K_REASON, K_TASKS, K_COUNT
};
static const char *const key_names[K_COUNT] = {
  "t", "sid", "n", "pad", "data", "name", "version", "hw", "size", "crc32", "sha256", "chunk",
  "downgrade", "force", "seq", "keyId", "sig", "off", "crc", "reason", "tasks",
};
static const char *const type_names[] = {
  "ping", "probe", "query", "offer", "chunk", "verify", "activate", "confirm", "abort", "tasks",
};
#define B(k) (1ul << (k))
/* Per type: keys it has, and keys it requires (section 6 field tables). */
static const uint32_t type_keys[] = {
  B(K_N) | B(K_PAD),
  B(K_N) | B(K_DATA),
  0,
  B(K_SID) | B(K_NAME) | B(K_VERSION) | B(K_HW) | B(K_SIZE) | B(K_CRC32) | B(K_SHA256) | B(K_CHUNK) |
      B(K_DOWNGRADE) | B(K_FORCE) | B(K_SEQ) | B(K_KEYID) | B(K_SIG),
  B(K_SID) | B(K_OFF) | B(K_DATA) | B(K_CRC),
  B(K_SID), B(K_SID), B(K_SHA256), B(K_SID) | B(K_REASON), B(K_TASKS),
};
static const uint32_t type_required[] = {
  B(K_N), B(K_N) | B(K_DATA), 0,
  B(K_SID) | B(K_NAME) | B(K_VERSION) | B(K_HW) | B(K_SIZE) | B(K_CRC32) | B(K_SHA256) | B(K_CHUNK),
  B(K_SID) | B(K_OFF) | B(K_DATA) | B(K_CRC),
  B(K_SID), B(K_SID), B(K_SHA256), B(K_SID), B(K_TASKS),
};

static int eq(const fwd_cbor_item *it, const char *s) {
  size_t n = strlen(s);
  return it->arg == n && memcmp(it->ptr, s, n) == 0;
}

static int lookup(const fwd_cbor_item *it, const char *const *names, int count) {
  int i;
  for (i = 0; i < count; i++) if (eq(it, names[i])) return i;
  return -1;
}

/* `name` / hardware model pattern ^[A-Za-z0-9][A-Za-z0-9._-]*$, 1..64 (section 5.1). */
static int valid_name(const uint8_t *p, uint32_t n) {
  uint32_t i;
  if (n < 1 || n > FWD_MAX_NAME) return 0;
  for (i = 0; i < n; i++) {
    uint8_t c = p[i];
    int alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-'))) return 0;
  }
  return 1;
}

static int valid_hex(const uint8_t *p, uint32_t n, uint32_t want) {
  uint32_t i;
  if (n != want) return 0;
  for (i = 0; i < n; i++) if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f'))) return 0;
  return 1;
}

static fwd_str str_of(const fwd_cbor_item *it) {
  fwd_str s;
  s.p = (const char *)it->ptr;
  s.n = (uint16_t)it->arg;
  return s;
}

/* One entry of tasks.tasks (section 6.14): validated, not kept. */
static int task_entry(fwd_cbor_reader *r) {
  static const char *const names[] = { "campaign", "name", "version", "sha256", "size", "steps", "notBefore" };
  static const char *const steps[] = { "download", "verify", "activate" };
  fwd_cbor_item it, v;
  uint32_t i, j, seen = 0, pairs;
  uint64_t nb;
  if (fwd_cbor_read(r, &it) || it.major != FWD_MAP) return 1;
  pairs = it.arg;
  for (i = 0; i < pairs; i++) {
    int k;
    if (fwd_cbor_read(r, &it) || it.major != FWD_TEXT) return 1;
    k = lookup(&it, names, 7);
    if (k < 0) { if (fwd_cbor_skip(r)) return 1; continue; }
    if (seen & B(k)) return 1;
    seen |= B(k);
    if (k == 5) {
      uint32_t used = 0;
      if (fwd_cbor_read(r, &v) || v.major != FWD_ARRAY || v.arg < 1 || v.arg > 3) return 1;
      for (j = 0; j < v.arg; j++) {
        fwd_cbor_item s;
        int x;
        if (fwd_cbor_read(r, &s) || s.major != FWD_TEXT) return 1;
        x = lookup(&s, steps, 3);
        if (x < 0 || (used & B(x))) return 1;
        used |= B(x);
      }
      continue;
    }
    if (fwd_cbor_read(r, &v)) return 1;
    switch (k) {
      case 0: if (v.major != FWD_TEXT || v.arg < 1 || v.arg > FWD_MAX_NAME) return 1; break;
      case 1: if (v.major != FWD_TEXT || !valid_name(v.ptr, v.arg)) return 1; break;
      case 2: if (v.major != FWD_TEXT || !fwd_version_valid((const char *)v.ptr, v.arg)) return 1; break;
      case 3: if (v.major != FWD_TEXT || !valid_hex(v.ptr, v.arg, 64)) return 1; break;
      case 4: if (v.major != FWD_UINT || v.arg < 1) return 1; break;
      default: if (fwd_cbor_number_u53(&v, &nb)) return 1; break;
    }
  }
  return (seen & 0x3f) != 0x3f;
}

static fwd_dec_result field(fwd_down *m, const char *name) {
  m->bad_field = name;
  return FWD_DEC_FIELD;
}

fwd_dec_result fwd_decode_down(const uint8_t *buf, size_t len, fwd_down *m) {
  fwd_cbor_reader r;
  fwd_cbor_item it, v;
  uint32_t pairs, i, seen = 0;
  int type = -1;
  memset(m, 0, sizeof *m);
  if (len > FWD_MAX_OTA_MESSAGE) return FWD_DEC_SIZE;
  /* 2. exactly one well-formed item, nothing after it */
  fwd_cbor_reader_init(&r, buf, len);
  if (fwd_cbor_skip(&r) || fwd_cbor_end(&r)) return FWD_DEC_CBOR;
  /* 3. a map with a text `t`; 4. a type of this direction */
  fwd_cbor_reader_init(&r, buf, len);
  if (fwd_cbor_read(&r, &it) || it.major != FWD_MAP) return FWD_DEC_SHAPE;
  pairs = it.arg;
  for (i = 0; i < pairs; i++) {
    if (fwd_cbor_read(&r, &it) || it.major != FWD_TEXT) return FWD_DEC_SHAPE;
    if (eq(&it, "t")) {
      if (fwd_cbor_read(&r, &v) || v.major != FWD_TEXT || type != -1) return FWD_DEC_SHAPE;
      type = lookup(&v, type_names, (int)(sizeof type_names / sizeof type_names[0]));
      if (type < 0) return FWD_DEC_TYPE;
    } else if (fwd_cbor_skip(&r)) {
      return FWD_DEC_SHAPE;
    }
  }
  if (type < 0) return FWD_DEC_SHAPE;
  m->type = (fwd_msg_type)type;
  /* 5. fields */
  fwd_cbor_reader_init(&r, buf, len);
  fwd_cbor_read(&r, &it);
  for (i = 0; i < pairs; i++) {
    int k;
    fwd_cbor_read(&r, &it);
    k = lookup(&it, key_names, K_COUNT);
    if (k == K_T) { fwd_cbor_skip(&r); continue; }
    if (k < 0 || !(type_keys[type] & B(k))) { fwd_cbor_skip(&r); continue; } /* section 1.4.9 */
    if (seen & B(k)) return field(m, key_names[k]);                           /* a repeated key */
    seen |= B(k);
    if (k == K_HW) {
      uint32_t j;
      if (fwd_cbor_read(&r, &v) || v.major != FWD_ARRAY || v.arg < 1 || v.arg > FWD_MAX_HW_MODELS) return field(m, "hw");
      m->hw_count = (uint8_t)v.arg;
      for (j = 0; j < v.arg; j++) {
        fwd_cbor_item h;
        if (fwd_cbor_read(&r, &h) || h.major != FWD_TEXT || !valid_name(h.ptr, h.arg)) return field(m, "hw");
        m->hw[j] = str_of(&h);
      }
      continue;
    }
    if (k == K_TASKS) {
      uint32_t j;
      if (fwd_cbor_read(&r, &v) || v.major != FWD_ARRAY || v.arg > FWD_MAX_TASKS) return field(m, "tasks");
      m->task_count = (uint8_t)v.arg;
      for (j = 0; j < v.arg; j++) if (task_entry(&r)) return field(m, "tasks");
      continue;
    }
    if (fwd_cbor_read(&r, &v)) return field(m, key_names[k]);
    switch (k) {
      case K_SID: case K_N: case K_SIZE: case K_CRC32: case K_CHUNK: case K_SEQ: case K_OFF: case K_CRC:
        if (v.major != FWD_UINT) return field(m, key_names[k]);
        if (k == K_SID) m->sid = v.arg;
        else if (k == K_N) m->n = v.arg;
        else if (k == K_SIZE) { if (v.arg < 1) return field(m, "size"); m->size = v.arg; }
        else if (k == K_CRC32) m->crc32 = v.arg;
        else if (k == K_CHUNK) {
          if (v.arg < FWD_MIN_CHUNK || v.arg > FWD_PROTOCOL_MAX_CHUNK) return field(m, "chunk");
          m->chunk = v.arg;
        } else if (k == K_SEQ) m->seq = v.arg;
        else if (k == K_OFF) m->off = v.arg;
        else m->crc = v.arg;
        break;
      case K_PAD: case K_DATA:
        if (v.major != FWD_BYTES || v.arg > FWD_PROTOCOL_MAX_CHUNK) return field(m, key_names[k]);
        if (type == FWD_MSG_CHUNK && v.arg < 1) return field(m, "data");
        m->data = v.ptr;
        m->data_len = v.arg;
        m->has_data = 1;
        break;
      case K_NAME:
        if (v.major != FWD_TEXT || !valid_name(v.ptr, v.arg)) return field(m, "name");
        m->name = str_of(&v);
        break;
      case K_VERSION:
        if (v.major != FWD_TEXT || !fwd_version_valid((const char *)v.ptr, v.arg)) return field(m, "version");
        m->version = str_of(&v);
        break;
      case K_SHA256:
        if (v.major != FWD_TEXT || !valid_hex(v.ptr, v.arg, 64)) return field(m, "sha256");
        m->sha256 = str_of(&v);
        break;
      case K_KEYID:
        if (v.major != FWD_TEXT || !valid_hex(v.ptr, v.arg, 16)) return field(m, "keyId");
        m->key_id = str_of(&v);
        break;
      case K_SIG:
        if (v.major != FWD_TEXT || !valid_hex(v.ptr, v.arg, 128)) return field(m, "sig");
        m->sig = str_of(&v);
        m->has_sig = 1;
        break;
      case K_REASON:
        if (v.major != FWD_TEXT || v.arg > 1024) return field(m, "reason"); /* 256 UTF-16 units, at most 1024 UTF-8 bytes */
        m->reason = str_of(&v);
        break;
      case K_DOWNGRADE: case K_FORCE:
        if (v.major != FWD_SIMPLE || v.fbits) return field(m, key_names[k]);
        if (k == K_DOWNGRADE) m->downgrade = v.arg == 21;
        else m->force = v.arg == 21;
        break;
      default:
        break;
    }
  }
  if ((seen & type_required[type]) != type_required[type]) {
    uint32_t missing = type_required[type] & ~seen;
    int k = 0;
    while (!(missing & B(k))) k++;
    return field(m, key_names[k]);
  }
  if (type == FWD_MSG_OFFER && ((seen & B(K_KEYID)) != 0) != ((seen & B(K_SIG)) != 0)) return field(m, "keyId");
  return FWD_DEC_OK;
}

/* ---------------------------------------------------------------- encoding */

static void kv_text(fwd_cbor_writer *w, const char *k, const char *v) {
  fwd_cbor_text(w, k);
  fwd_cbor_text(w, v);
}
static void kv_uint(fwd_cbor_writer *w, const char *k, uint32_t v) {
  fwd_cbor_text(w, k);
  fwd_cbor_uint(w, v);
}
static void kv_bool(fwd_cbor_writer *w, const char *k, int v) {
  fwd_cbor_text(w, k);
  fwd_cbor_bool(w, v);
}
static void kv_slot(fwd_cbor_writer *w, const char *k, char slot) {
  fwd_cbor_text(w, k);
  fwd_cbor_textn(w, &slot, 1);
}

/* section 6.3 */
void fwd_enc_status(fwd_cbor_writer *w, const fwd_status_msg *s) {
  int i;
  fwd_cbor_map(w, s->floor ? 9 : 8);
  kv_text(w, "t", "status");
  kv_text(w, "hw", s->hw);
  kv_text(w, "version", s->version);
  kv_slot(w, "slot", s->slot);
  fwd_cbor_text(w, "slots");
  fwd_cbor_map(w, 2);
  for (i = 0; i < 2; i++) {
    const fwd_slot_info *si = &s->slots[i];
    fwd_cbor_text(w, i ? "b" : "a");
    fwd_cbor_map(w, si->version ? 3 : 1);
    kv_text(w, "state", si->state);
    if (si->version) {
      kv_text(w, "version", si->version);
      kv_text(w, "sha256", si->sha256_hex);
    }
  }
  kv_uint(w, "maxChunk", s->max_chunk);
  kv_bool(w, "busy", s->busy);
  kv_bool(w, "trial", s->trial);
  if (s->floor) kv_text(w, "floor", s->floor);
}

/* section 6.9 */
void fwd_enc_boot(fwd_cbor_writer *w, const char *version, char slot, const char *sha256_hex, int trial, int reverted, const char *reason) {
  fwd_cbor_map(w, 6u + (reason ? 1u : 0u));
  kv_text(w, "t", "boot");
  kv_text(w, "version", version);
  kv_slot(w, "slot", slot);
  kv_text(w, "sha256", sha256_hex);
  kv_bool(w, "trial", trial);
  kv_bool(w, "reverted", reverted);
  if (reason) kv_text(w, "reason", reason);
}

/* section 6.4 */
void fwd_enc_pong(fwd_cbor_writer *w, uint32_t n, const uint8_t *pad, uint32_t pad_len, int has_pad) {
  fwd_cbor_map(w, has_pad ? 3 : 2);
  kv_text(w, "t", "pong");
  kv_uint(w, "n", n);
  if (has_pad) {
    fwd_cbor_text(w, "pad");
    fwd_cbor_bytes(w, pad, pad_len);
  }
}

void fwd_enc_probed(fwd_cbor_writer *w, uint32_t n, uint32_t size) {
  fwd_cbor_map(w, 3);
  kv_text(w, "t", "probed");
  kv_uint(w, "n", n);
  kv_uint(w, "size", size);
}

/* section 6.5 */
void fwd_enc_accept(fwd_cbor_writer *w, uint32_t sid, uint32_t next, uint32_t chunk, uint32_t window) {
  fwd_cbor_map(w, 5);
  kv_text(w, "t", "accept");
  kv_uint(w, "sid", sid);
  kv_uint(w, "next", next);
  kv_uint(w, "chunk", chunk);
  kv_uint(w, "window", window);
}

void fwd_enc_reject(fwd_cbor_writer *w, uint32_t sid, const char *code, const char *reason) {
  fwd_cbor_map(w, reason ? 4 : 3);
  kv_text(w, "t", "reject");
  kv_uint(w, "sid", sid);
  kv_text(w, "code", code);
  if (reason) kv_text(w, "reason", reason);
}

/* section 6.6 */
void fwd_enc_ack_begin(fwd_cbor_writer *w, uint32_t sid, uint32_t next, uint32_t count) {
  fwd_cbor_map(w, 4);
  kv_text(w, "t", "ack");
  kv_uint(w, "sid", sid);
  kv_uint(w, "next", next);
  fwd_cbor_text(w, "missing");
  fwd_cbor_array(w, count);
}

void fwd_enc_ack(fwd_cbor_writer *w, uint32_t sid, uint32_t next, const uint32_t *missing, uint32_t count) {
  uint32_t i;
  fwd_enc_ack_begin(w, sid, next, count);
  for (i = 0; i < count; i++) fwd_cbor_uint(w, missing[i]);
}

/* section 6.7 */
void fwd_enc_verified(fwd_cbor_writer *w, uint32_t sid, int ok, const char *code, const char *reason) {
  fwd_cbor_map(w, 3u + (code ? 1u : 0u) + (reason ? 1u : 0u));
  kv_text(w, "t", "verified");
  kv_uint(w, "sid", sid);
  kv_bool(w, "ok", ok);
  if (code) kv_text(w, "code", code);
  if (reason) kv_text(w, "reason", reason);
}

/* section 6.8 */
void fwd_enc_activated(fwd_cbor_writer *w, uint32_t sid, char slot) {
  fwd_cbor_map(w, 3);
  kv_text(w, "t", "activated");
  kv_uint(w, "sid", sid);
  kv_slot(w, "slot", slot);
}

/* section 6.10 */
void fwd_enc_confirmed(fwd_cbor_writer *w, const char *sha256_hex, const char *version) {
  fwd_cbor_map(w, 3);
  kv_text(w, "t", "confirmed");
  kv_text(w, "sha256", sha256_hex);
  kv_text(w, "version", version);
}

/* section 6.11 */
void fwd_enc_aborted(fwd_cbor_writer *w, uint32_t sid) {
  fwd_cbor_map(w, 2);
  kv_text(w, "t", "aborted");
  kv_uint(w, "sid", sid);
}

/* section 5.4.1: ["fwgate-manifest-v1", name, version, hw, size, crc32, sha256, chunk, seq] */
void fwd_enc_signed_bytes(fwd_cbor_writer *w, const fwd_down *o) {
  uint32_t i;
  fwd_cbor_array(w, 9);
  fwd_cbor_text(w, "fwgate-manifest-v1");
  fwd_cbor_textn(w, o->name.p, o->name.n);
  fwd_cbor_textn(w, o->version.p, o->version.n);
  fwd_cbor_array(w, o->hw_count);
  for (i = 0; i < o->hw_count; i++) fwd_cbor_textn(w, o->hw[i].p, o->hw[i].n);
  fwd_cbor_uint(w, o->size);
  fwd_cbor_uint(w, o->crc32);
  fwd_cbor_textn(w, o->sha256.p, o->sha256.n);
  fwd_cbor_uint(w, o->chunk);
  fwd_cbor_uint(w, o->seq);
}

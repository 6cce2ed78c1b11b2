/*
 * fwd_device.c - the device side of docs/protocol.md section 6, in the order of the spec:
 * 6.2 connect, 6.3 status, 6.4 ping/probe, 6.5 offer, 6.6 chunk/ack, 6.7 verify, 6.8 activate,
 * 6.9 boot report (the boot rules are in fwd_boot.c), 6.10 confirm, 6.11 abort, 6.12 query,
 * 6.14 tasks.
 */
#include "fwd_internal.h"
#include "fwd_util.h"
#include <string.h>

static const char *const state_names[] = { "empty", "receiving", "ready", "pending", "trial", "confirmed", "bad" };
const char *fwd_slot_state_name(int s) { return s >= 0 && s <= FWD_BAD ? state_names[s] : "empty"; }
const fwd_slot_rec *fwd_running(const fwd_device *d) { return &d->rec.slots[d->boot_slot]; }
static char slot_char(int s) { return s ? 'b' : 'a'; }
static int inactive(const fwd_device *d) { return 1 - d->boot_slot; }

/* ---------------------------------------------------------------- console events */

static void json_raw(fwd_json *j, const char *s, size_t n) {
  while (n-- && j->len + 2 < j->cap) j->p[j->len++] = *s++;
  j->p[j->len] = 0;
}
static void json_key(fwd_json *j, const char *key) {
  if (j->len) json_raw(j, ",", 1);
  json_raw(j, "\"", 1);
  json_raw(j, key, strlen(key));
  json_raw(j, "\":", 2);
}
void fwd_json_str(fwd_json *j, const char *key, const char *v, size_t n) {
  size_t i;
  json_key(j, key);
  json_raw(j, "\"", 1);
  for (i = 0; i < n; i++) {
    char c = v[i];
    if (c == '"' || c == '\\') json_raw(j, "\\", 1);
    if ((unsigned char)c < 0x20) c = ' ';
    json_raw(j, &c, 1);
  }
  json_raw(j, "\"", 1);
}
void fwd_json_uint(fwd_json *j, const char *key, uint32_t v) {
  char b[11];
  int i = 10;
  b[10] = 0;
  do { b[--i] = (char)('0' + v % 10); v /= 10; } while (v);
  json_key(j, key);
  json_raw(j, b + i, (size_t)(10 - i));
}
void fwd_json_bool(fwd_json *j, const char *key, int v) {
  json_key(j, key);
  json_raw(j, v ? "true" : "false", v ? 4 : 5);
}
void fwd_event(fwd_device *d, const char *type, const char *json) {
  if (d->port->event) d->port->event(d->port->ctx, type, json);
}
#define EV(name, size) char name##_buf[size]; fwd_json name = { name##_buf, size, 0 }; name##_buf[0] = 0

/* ---------------------------------------------------------------- sending */

static void send(fwd_device *d, fwd_cbor_writer *w, int qos) {
  if (w->err) { fwd_event(d, "error", "\"message\":\"tx buffer too small\""); return; }
  (void)d->port->publish(d->port->ctx, w->buf, w->len, qos, 0);
}
#define TX(w) fwd_cbor_writer w; fwd_cbor_writer_init(&w, d->tx, sizeof d->tx)

/* section 6.3 */
static void send_status(fwd_device *d) {
  char hex[2][65];
  fwd_status_msg s;
  int i;
  TX(w);
  s.hw = d->cfg.hw;
  s.version = fwd_running(d)->version;
  s.floor = d->cfg.floor;
  s.slot = slot_char(d->boot_slot);
  for (i = 0; i < 2; i++) {
    const fwd_slot_rec *r = &d->rec.slots[i];
    s.slots[i].state = fwd_slot_state_name(r->state);
    /* version and sha256 when the slot holds, receives or refused an image (section 6.3) */
    if (r->state != FWD_EMPTY && r->version[0]) {
      fwd_hex_encode(r->sha256, 32, hex[i]);
      s.slots[i].version = r->version;
      s.slots[i].sha256_hex = hex[i];
    } else {
      s.slots[i].version = 0;
      s.slots[i].sha256_hex = 0;
    }
  }
  s.max_chunk = d->cfg.max_chunk;
  s.busy = d->busy;
  s.trial = d->rec.trial;
  fwd_enc_status(&w, &s);
  send(d, &w, 1);
}

/* ---------------------------------------------------------------- 6.2 connect, 6.9.1 boot report */

void fwd_connected(fwd_device *d) {
  if (!d->boot_sent) {
    char hex[65];
    const fwd_slot_rec *r = fwd_running(d);
    TX(w);
    fwd_hex_encode(r->sha256, 32, hex);
    fwd_enc_boot(&w, r->version, slot_char(d->boot_slot), hex, d->boot_trial, d->boot_reverted, d->boot_reverted ? d->boot_reason : 0);
    send(d, &w, 1);
    d->boot_sent = 1;
  }
  send_status(d);
}

int fwd_init(fwd_device *d, const fwd_port *port, const fwd_config *cfg) {
  uint32_t i;
  uint8_t digest[32];
  int r;
  memset(d, 0, sizeof *d);
  d->port = port;
  d->cfg = *cfg;
  if (d->cfg.max_chunk > FWD_MAX_CHUNK) d->cfg.max_chunk = FWD_MAX_CHUNK;
  if (d->cfg.max_chunk < FWD_MIN_CHUNK) d->cfg.max_chunk = FWD_MIN_CHUNK;
  if (d->cfg.window < 1) d->cfg.window = 1;
  if (d->cfg.pinned_count > FWD_MAX_PINNED_KEYS) d->cfg.pinned_count = FWD_MAX_PINNED_KEYS;
  /* key id = the first 8 bytes of SHA-256 of the raw key (section 5.4.2) */
  for (i = 0; i < d->cfg.pinned_count; i++) {
    fwd_sha256(d, d->cfg.pinned[i], 32, digest);
    memcpy(d->key_ids[i], digest, 8);
  }
  r = fwd_boot(d);
  if (r) {
    d->fatal = 1;
    fwd_event(d, "error", "\"message\":\"no bootable slot (E_IMAGE_NOT_FOUND)\"");
    return r;
  }
  d->boot_ms = port->now_ms(port->ctx);
  /* a transfer interrupted by the reset resumes from its durable record (section 6.6.6) */
  {
    fwd_xfer_rec *x = &d->xfer;
    const fwd_slot_rec *s = &d->rec.slots[inactive(d)];
    int n = port->kv_read(port->ctx, FWD_KV_TRANSFER, x, sizeof *x);
    if (n == (int)sizeof *x && x->magic == FWD_XFER_MAGIC && x->crc == fwd_crc32(0, (const uint8_t *)x, offsetof(fwd_xfer_rec, crc)) &&
        x->size > 0 && x->chunk >= FWD_MIN_CHUNK && x->slot == inactive(d) && s->state == FWD_RECEIVING &&
        s->size == x->size && memcmp(s->sha256, x->sha256, 32) == 0) {
      uint32_t k;
      d->xfer_on = 1;
      d->xfer_erased = 1;
      d->count = (x->size + x->chunk - 1) / x->chunk;
      d->first = d->count;
      d->highest_plus1 = 0;
      for (k = 0; k < d->count; k++) {
        if (x->held[k >> 3] & (1u << (k & 7))) d->highest_plus1 = k + 1;
        else if (d->first == d->count) d->first = k;
      }
      memset(&d->prev, 0, sizeof d->prev);
    } else {
      memset(x, 0, sizeof *x);
    }
  }
  {
    EV(j, 192);
    const fwd_slot_rec *run = fwd_running(d);
    fwd_json_str(&j, "version", run->version, strlen(run->version));
    fwd_json_str(&j, "slot", d->boot_slot ? "b" : "a", 1);
    fwd_json_bool(&j, "trial", d->boot_trial);
    fwd_json_bool(&j, "reverted", d->boot_reverted);
    if (d->boot_reverted) fwd_json_str(&j, "reason", d->boot_reason, strlen(d->boot_reason));
    fwd_event(d, "booted", j_buf);
  }
  return 0;
}

void fwd_set_busy(fwd_device *d, int busy) {
  if (!!busy == d->busy) return;
  d->busy = (uint8_t)!!busy;
  send_status(d); /* section 6.3.1: when busy changes */
}

/* ---------------------------------------------------------------- 6.6 chunk / ack */

static int held(const fwd_device *d, uint32_t k) { return (d->xfer.held[k >> 3] >> (k & 7)) & 1; }
static uint32_t chunk_len(const fwd_device *d, uint32_t k) {
  uint32_t off = k * d->xfer.chunk;
  return d->xfer.size - off < d->xfer.chunk ? d->xfer.size - off : d->xfer.chunk;
}
static uint32_t next_offset(const fwd_device *d) {
  uint32_t o = d->first * d->xfer.chunk;
  return o > d->xfer.size ? d->xfer.size : o;
}
static void mark_held(fwd_device *d, uint32_t k) {
  d->xfer.held[k >> 3] |= (uint8_t)(1u << (k & 7));
  if (k + 1 > d->highest_plus1) d->highest_plus1 = k + 1;
  while (d->first < d->count && held(d, d->first)) d->first++;
}
static int is_bad_listed(const fwd_device *d, uint32_t k) {
  uint32_t i;
  for (i = 0; i < d->n_bad; i++) if (d->bad[i] == k) return 1;
  return 0;
}

/* section 6.6.4: next, then the gaps from next up to the highest chunk held, then the bad chunks
 * of this batch that are not held; ascending, at most FWD_MAX_MISSING. At the cap the gaps are
 * kept first (lowest offsets), then bad chunks while there is room. */
static void send_ack(fwd_device *d) {
  uint32_t k, gaps = 0, n_listed, room, chosen = 0, emitted = 0;
  uint32_t chosen_bits = 0; /* which of bad[] are listed */
  TX(w);
  for (k = d->first; k < d->highest_plus1; k++) if (!held(d, k)) gaps++;
  if (gaps > FWD_MAX_MISSING) gaps = FWD_MAX_MISSING;
  n_listed = gaps;
  room = FWD_MAX_MISSING - gaps;
  for (k = 0; k < d->n_bad && chosen < room; k++) {
    uint32_t b = d->bad[k], dup = 0, x;
    if (held(d, b)) continue;
    if (b >= d->first && b < d->highest_plus1) {
      /* a gap already listed, unless past the capped gaps */
      uint32_t rank = 0;
      for (x = d->first; x < b; x++) if (!held(d, x)) rank++;
      if (rank < gaps) continue;
    }
    for (x = 0; x < k; x++) if ((chosen_bits >> x & 1) && d->bad[x] == b) dup = 1;
    if (dup) continue;
    chosen_bits |= 1u << k;
    chosen++;
  }
  n_listed += chosen;
  fwd_enc_ack_begin(&w, d->owed_sid, next_offset(d), n_listed);
  {
    uint32_t gap_rank = 0;
    for (k = d->first; k < d->count && emitted < n_listed; k++) {
      int list = 0;
      if (!held(d, k) && k < d->highest_plus1) {
        if (gap_rank < gaps) list = 1;
        gap_rank++;
      }
      if (!list) {
        uint32_t x;
        for (x = 0; x < d->n_bad; x++) if ((chosen_bits >> x & 1) && d->bad[x] == k) list = 1;
      }
      if (list) { fwd_cbor_uint(&w, k * d->xfer.chunk); emitted++; }
    }
    /* bad chunks below `first` are held (not listed); any left are below first: none */
  }
  send(d, &w, 0);
}

/* End of a batch: make the written chunks durable, record them as held, then one ack. */
static void commit(fwd_device *d) {
  uint32_t i, was_complete;
  if (!d->owed && !d->n_unflushed) return;
  if (!d->xfer_on) { d->owed = 0; d->n_unflushed = 0; d->n_bad = 0; return; }
  was_complete = d->first >= d->count;
  if (d->n_unflushed) {
    if (d->port->slot_flush(d->port->ctx, d->xfer.slot) == 0) {
      for (i = 0; i < d->n_unflushed; i++) mark_held(d, d->unflushed[i]);
      if (fwd_save_xfer(d)) fwd_event(d, "error", "\"message\":\"cannot write the transfer record\"");
    } else {
      fwd_event(d, "error", "\"message\":\"slot flush failed\"");
    }
    d->n_unflushed = 0;
  }
  if (d->owed) send_ack(d);
  d->owed = 0;
  d->n_bad = 0;
  if (!was_complete && d->first >= d->count && d->xfer_has_sid) {
    EV(j, 32);
    fwd_json_uint(&j, "sid", d->xfer_sid);
    fwd_event(d, "transfer-complete", j_buf);
  }
}

static void owe(fwd_device *d, uint32_t sid) {
  if (d->owed && d->owed_sid != sid) commit(d);
  d->owed = 1;
  d->owed_sid = sid;
}

/* section 6.6.3 */
static void on_chunk(fwd_device *d, const fwd_down *m) {
  const char *why = 0;
  uint32_t k;
  if (!d->xfer_on || !d->xfer_has_sid || m->sid != d->xfer_sid) { d->ignored++; return; }
  d->chunks++;
  k = m->off / d->xfer.chunk;
  if (fwd_crc32(0, m->data, m->data_len) != m->crc) why = "crc32 mismatch";
  else if (m->off % d->xfer.chunk) why = "offset not a multiple of the chunk size";
  else if (m->off >= d->xfer.size) why = "offset beyond the image";
  else if (m->data_len != chunk_len(d, k)) why = "wrong length";
  if (why) {
    EV(j, 128);
    d->bad_chunks++;
    fwd_json_uint(&j, "sid", m->sid);
    fwd_json_uint(&j, "off", m->off);
    fwd_json_str(&j, "why", why, strlen(why));
    fwd_event(d, "chunk-bad", j_buf);
    if (d->n_bad >= FWD_WINDOW) commit(d);
    owe(d, m->sid);
    if (k < d->count && !is_bad_listed(d, k)) d->bad[d->n_bad++] = k;
    return;
  }
  {
    uint32_t i;
    int dup = held(d, k);
    for (i = 0; i < d->n_unflushed && !dup; i++) dup = d->unflushed[i] == k;
    if (dup) { d->duplicates++; owe(d, m->sid); return; }
  }
  if (!d->xfer_erased) {
    /* the slot is erased at the first chunk written, not at the offer: an abort before it
     * leaves the slot as it was (section 6.5.4 case 3, 6.11.1) */
    if (d->port->slot_erase(d->port->ctx, d->xfer.slot)) { fwd_event(d, "error", "\"message\":\"slot erase failed\""); return; }
    d->xfer_erased = 1;
  }
  if (d->port->slot_write(d->port->ctx, d->xfer.slot, m->off, m->data, m->data_len)) {
    fwd_event(d, "error", "\"message\":\"slot write failed\"");
    return; /* not acked: the gateway's ack timeout resends it */
  }
  owe(d, m->sid);
  d->unflushed[d->n_unflushed++] = (uint16_t)k;
  if (d->n_unflushed >= FWD_FLUSH_BATCH) commit(d);
}

void fwd_idle(fwd_device *d) { commit(d); }

/* ---------------------------------------------------------------- 6.5 offer */

static int str_is(const fwd_str *s, const char *z) { return strlen(z) == s->n && memcmp(s->p, z, s->n) == 0; }

static void reject(fwd_device *d, const fwd_down *m, const char *code, const char *reason) {
  EV(j, 192);
  TX(w);
  fwd_enc_reject(&w, m->sid, code, reason);
  send(d, &w, 1);
  fwd_json_uint(&j, "sid", m->sid);
  fwd_json_str(&j, "version", m->version.p, m->version.n);
  fwd_json_str(&j, "code", code, strlen(code));
  fwd_json_str(&j, "reason", reason, strlen(reason));
  fwd_event(d, "offer-rejected", j_buf);
}

static void accept(fwd_device *d, const fwd_down *m, uint32_t next, uint32_t chunk, int resumed) {
  EV(j, 128);
  TX(w);
  fwd_enc_accept(&w, m->sid, next, chunk, d->cfg.window);
  send(d, &w, 1);
  fwd_json_uint(&j, "sid", m->sid);
  fwd_json_str(&j, "version", m->version.p, m->version.n);
  fwd_json_uint(&j, "next", next);
  fwd_json_uint(&j, "chunk", chunk);
  fwd_json_bool(&j, "resumed", resumed);
  fwd_event(d, "offer-accepted", j_buf);
}

/* section 5.4.3 over the offer's fields; the result is kept with the transfer and reported at
 * verify, after the digests (section 6.7.1 step 4). */
static uint8_t check_signature(fwd_device *d, const fwd_down *m) {
  uint8_t kid[8], sig[64];
  uint32_t i;
  if (d->cfg.pinned_count == 0) return FWD_SIG_UNCHECKED;
  if (!m->has_sig) return FWD_SIG_UNSIGNED;
  fwd_hex_decode(m->key_id.p, 16, kid);
  for (i = 0; i < d->cfg.pinned_count; i++) if (memcmp(kid, d->key_ids[i], 8) == 0) break;
  if (i == d->cfg.pinned_count) return FWD_SIG_UNKNOWN_KEY;
  fwd_hex_decode(m->sig.p, 128, sig);
  {
    TX(w); /* the signed bytes are rebuilt in the tx buffer, which is free at this point */
    fwd_enc_signed_bytes(&w, m);
    if (w.err) return FWD_SIG_BAD;
    return d->port->ed25519_verify(d->port->ctx, sig, w.buf, w.len, d->cfg.pinned[i]) == 0 ? FWD_SIG_OK : FWD_SIG_BAD;
  }
}

/* Regroup held chunks at a new chunk size, in place: a new chunk is held when all its bytes
 * are (section 6.5.4 case 2). Ascending for a larger size, descending for a smaller one, so
 * that no old bit is overwritten before it is read. */
static void regroup(fwd_device *d, uint32_t chunk) {
  uint32_t old = d->xfer.chunk, size = d->xfer.size;
  uint32_t ocount = (size + old - 1) / old, ncount = (size + chunk - 1) / chunk, j;
  uint8_t *h = d->xfer.held;
  for (j = 0; j < ncount; j++) {
    uint32_t jj = chunk > old ? j : ncount - 1 - j;
    uint32_t start = jj * chunk, end = start + chunk < size ? start + chunk : size, i, all = 1;
    for (i = start / old; i * old < end && i < ocount; i++) if (!((h[i >> 3] >> (i & 7)) & 1)) { all = 0; break; }
    if (all) h[jj >> 3] |= (uint8_t)(1u << (jj & 7));
    else h[jj >> 3] &= (uint8_t)~(1u << (jj & 7));
  }
  for (j = ncount; j < ocount; j++) h[j >> 3] &= (uint8_t)~(1u << (j & 7));
  d->xfer.chunk = chunk;
  d->count = ncount;
  d->first = ncount;
  d->highest_plus1 = 0;
  for (j = 0; j < ncount; j++) {
    if ((h[j >> 3] >> (j & 7)) & 1) d->highest_plus1 = j + 1;
    else if (d->first == ncount) d->first = j;
  }
}

static void on_offer(fwd_device *d, const fwd_down *m) {
  const fwd_slot_rec *run = fwd_running(d);
  int slot = inactive(d), cmp, compatible = 0;
  fwd_slot_rec *cur = &d->rec.slots[slot];
  uint32_t chunk = m->chunk < d->cfg.max_chunk ? m->chunk : d->cfg.max_chunk, i;
  uint8_t sha[32];
  fwd_hex_decode(m->sha256.p, 64, sha);
  /* 6.5.3 refusal, in this order */
  if (d->busy && !m->force) { reject(d, m, "busy", "device in use"); return; }
  for (i = 0; i < m->hw_count; i++) if (str_is(&m->hw[i], d->cfg.hw)) compatible = 1;
  if (!compatible) { reject(d, m, "incompatible", "hardware model not in offer.hw"); return; }
  if (d->cfg.floor && fwd_version_cmp(m->version.p, m->version.n, d->cfg.floor, strlen(d->cfg.floor)) < 0) {
    reject(d, m, "below-floor", "offered version is below the security floor");
    return;
  }
  cmp = fwd_version_cmp(m->version.p, m->version.n, run->version, strlen(run->version));
  if (cmp == 0) { reject(d, m, "not-newer", "offered version is the running version"); return; }
  if (cmp < 0 && !m->downgrade) { reject(d, m, "not-newer", "offered version is older, and the offer is not a downgrade"); return; }
  if (m->seq < d->rec.max_seq) { reject(d, m, "seq-rollback", "offered seq is below the confirmed seq"); return; }
  if (m->size > d->port->slot_capacity(d->port->ctx, slot) || (m->size + chunk - 1) / chunk > FWD_MAX_CHUNKS) {
    reject(d, m, "no-space", "image larger than the slot");
    return;
  }
  if (d->rec.trial) { reject(d, m, "busy", "running image is in trial; confirm it first"); return; }

  /* 6.5.4 case 1: already received and verified */
  if (cur->state == FWD_READY && cur->size == m->size && memcmp(cur->sha256, sha, 32) == 0) {
    if (!cur->has_sid || cur->sid != m->sid) {
      cur->sid = m->sid;
      cur->has_sid = 1;
      if (fwd_save_state(d)) return;
    }
    accept(d, m, m->size, chunk, 1);
    return;
  }
  /* case 2: resume a partial transfer of the same image; the latest offer's seq and signature
   * are the ones verify checks (section 6.7.1) */
  if (d->xfer_on && d->xfer.size == m->size && d->xfer.crc32 == m->crc32 && memcmp(d->xfer.sha256, sha, 32) == 0) {
    commit(d);
    d->xfer_sid = m->sid;
    d->xfer_has_sid = 1;
    d->xfer.seq = m->seq;
    d->xfer.sig = check_signature(d, m);
    if (d->xfer.chunk != chunk) regroup(d, chunk);
    if (fwd_save_xfer(d)) return;
    accept(d, m, next_offset(d), chunk, d->first > 0 || d->highest_plus1 > 0);
    return;
  }
  /* case 3: a new image */
  commit(d);
  d->prev = *cur;
  if (cur->state != FWD_CONFIRMED && cur->state != FWD_BAD && cur->state != FWD_EMPTY) {
    memset(&d->prev, 0, sizeof d->prev); /* receiving / ready: nothing worth restoring */
  }
  memset(&d->xfer, 0, sizeof d->xfer);
  d->xfer.size = m->size;
  d->xfer.crc32 = m->crc32;
  d->xfer.chunk = chunk;
  d->xfer.seq = m->seq;
  memcpy(d->xfer.sha256, sha, 32);
  d->xfer.slot = (uint8_t)slot;
  d->xfer.sig = check_signature(d, m);
  if (fwd_save_xfer(d)) return;
  memset(cur, 0, sizeof *cur);
  cur->state = FWD_RECEIVING;
  cur->size = m->size;
  cur->crc32 = m->crc32;
  memcpy(cur->sha256, sha, 32);
  memcpy(cur->name, m->name.p, m->name.n);
  memcpy(cur->version, m->version.p, m->version.n);
  if (fwd_save_state(d)) return; /* durably before answering */
  d->xfer_on = 1;
  d->xfer_has_sid = 1;
  d->xfer_sid = m->sid;
  d->xfer_erased = 0;
  d->count = (m->size + chunk - 1) / chunk;
  d->first = 0;
  d->highest_plus1 = 0;
  accept(d, m, 0, chunk, 0);
  send_status(d);
}

/* ---------------------------------------------------------------- 6.7 verify */

static void verified(fwd_device *d, uint32_t sid, int ok, const char *code, const char *reason) {
  EV(j, 160);
  TX(w);
  fwd_enc_verified(&w, sid, ok, code, reason);
  send(d, &w, 1);
  fwd_json_uint(&j, "sid", sid);
  fwd_json_bool(&j, "ok", ok);
  if (code) fwd_json_str(&j, "code", code, strlen(code));
  fwd_event(d, "verified", j_buf);
}

static void on_verify(fwd_device *d, uint32_t sid) {
  int slot = inactive(d), r;
  fwd_slot_rec *cur = &d->rec.slots[slot];
  static const char *const codes[] = { 0, "size", "crc32", "sha256", "flash" };
  static const char *const reasons[] = {
    0, "the slot does not hold size bytes", "CRC-32 of the slot does not match the offer",
    "SHA-256 of the slot does not match the offer", "cannot read the slot",
  };
  static const char *const sig_reasons[] = { 0, "unsigned: the offer has no signature", "unknown-key: the key id is not pinned", "bad-signature: the signature does not verify" };
  commit(d);
  if (cur->state == FWD_READY && cur->has_sid && cur->sid == sid) { verified(d, sid, 1, 0, 0); return; }
  if (!d->xfer_on || !d->xfer_has_sid || d->xfer_sid != sid) { verified(d, sid, 0, "incomplete", "no transfer with this sid"); return; }
  if (d->first < d->count) { verified(d, sid, 0, "incomplete", "not every chunk is held"); return; }
  r = fwd_check_slot(d, slot, d->xfer.size, &d->xfer.crc32, d->xfer.sha256);
  if (r == 0 && d->xfer.sig != FWD_SIG_OK && d->xfer.sig != FWD_SIG_UNCHECKED) r = 10 + d->xfer.sig;
  if (r != 0) {
    /* nothing is installed unless it all arrived intact and signed: discard */
    memset(cur, 0, sizeof *cur);
    cur->state = FWD_EMPTY;
    fwd_drop_xfer(d);
    if (fwd_save_state(d)) return;
    (void)d->port->slot_erase(d->port->ctx, slot);
    if (r >= 10) verified(d, sid, 0, "signature", sig_reasons[r - 10]);
    else verified(d, sid, 0, codes[r], reasons[r]);
  } else {
    uint32_t seq = d->xfer.seq;
    fwd_drop_xfer(d);
    cur->state = FWD_READY;
    cur->sid = sid;
    cur->has_sid = 1;
    cur->seq = seq;
    if (fwd_save_state(d)) return;
    verified(d, sid, 1, 0, 0);
  }
  send_status(d);
}

/* ---------------------------------------------------------------- 6.8 activate */

static void on_activate(fwd_device *d, uint32_t sid) {
  int slot = inactive(d);
  fwd_slot_rec *cur = &d->rec.slots[slot];
  commit(d);
  if (!(cur->state == FWD_READY && cur->has_sid && cur->sid == sid)) { d->ignored++; return; }
  cur->state = FWD_PENDING;
  cur->has_sid = 0;
  if (fwd_save_state(d)) return;
  {
    EV(j, 48);
    TX(w);
    fwd_json_uint(&j, "sid", sid);
    fwd_json_str(&j, "slot", slot ? "b" : "a", 1);
    fwd_event(d, "activated", j_buf);
    fwd_enc_activated(&w, sid, slot_char(slot));
    (void)d->port->publish(d->port->ctx, w.buf, w.len, 1, 1); /* waits for the PUBACK, bounded */
  }
  fwd_event(d, "rebooting", "\"reason\":\"activate\"");
  d->port->reboot(d->port->ctx, "activate");
}

/* ---------------------------------------------------------------- 6.10 confirm */

static void on_confirm(fwd_device *d, const fwd_down *m) {
  fwd_slot_rec *r = &d->rec.slots[d->boot_slot];
  uint8_t sha[32];
  char hex[65];
  int repeat;
  commit(d);
  fwd_hex_decode(m->sha256.p, 64, sha);
  if (memcmp(r->sha256, sha, 32) != 0 || (r->state != FWD_TRIAL && r->state != FWD_CONFIRMED)) { d->ignored++; return; }
  repeat = r->state == FWD_CONFIRMED;
  if (!repeat) {
    r->state = FWD_CONFIRMED;
    d->rec.trial = 0;
    if (r->seq > d->rec.max_seq) d->rec.max_seq = r->seq; /* section 6.5.7: raised at confirmation */
    if (fwd_save_state(d)) return;
    d->boot_trial = 0;
  }
  {
    EV(j, 96);
    TX(w);
    fwd_hex_encode(r->sha256, 32, hex);
    fwd_enc_confirmed(&w, hex, r->version);
    send(d, &w, 1);
    fwd_json_str(&j, "version", r->version, strlen(r->version));
    fwd_json_bool(&j, "repeat", repeat);
    fwd_event(d, "confirmed", j_buf);
  }
  if (!repeat) send_status(d);
}

/* ---------------------------------------------------------------- 6.11 abort */

static void on_abort(fwd_device *d, uint32_t sid) {
  int slot = inactive(d), changed = 0;
  fwd_slot_rec *cur = &d->rec.slots[slot];
  commit(d);
  if (d->xfer_on && d->xfer_has_sid && d->xfer_sid == sid) {
    int erased = d->xfer_erased;
    fwd_drop_xfer(d);
    if (erased) { memset(cur, 0, sizeof *cur); cur->state = FWD_EMPTY; }
    else *cur = d->prev;
    changed = 1;
    if (fwd_save_state(d)) return;
    if (erased) (void)d->port->slot_erase(d->port->ctx, slot);
  } else if (cur->state == FWD_READY && cur->has_sid && cur->sid == sid) {
    memset(cur, 0, sizeof *cur);
    cur->state = FWD_EMPTY;
    changed = 1;
    if (fwd_save_state(d)) return;
    (void)d->port->slot_erase(d->port->ctx, slot);
  }
  {
    EV(j, 32);
    TX(w);
    fwd_enc_aborted(&w, sid);
    send(d, &w, 1);
    fwd_json_uint(&j, "sid", sid);
    fwd_event(d, "aborted", j_buf);
  }
  if (changed) send_status(d);
}

/* ---------------------------------------------------------------- dispatch (section 1.5) */

void fwd_receive(fwd_device *d, const uint8_t *buf, size_t len) {
  fwd_down m;
  fwd_dec_result r;
  if (d->fatal) return;
  r = fwd_decode_down(buf, len, &m);
  if (r != FWD_DEC_OK) {
    EV(j, 96);
    if (r == FWD_DEC_TYPE) d->unknown_type++;
    else d->invalid++;
    fwd_json_str(&j, "reason", r == FWD_DEC_TYPE ? "unknown type" : r == FWD_DEC_FIELD ? m.bad_field : "not a valid message",
                 strlen(r == FWD_DEC_TYPE ? "unknown type" : r == FWD_DEC_FIELD ? m.bad_field : "not a valid message"));
    fwd_event(d, "invalid", j_buf);
    return;
  }
  switch (m.type) {
    case FWD_MSG_PING: { /* 6.4.1: at once, in every state */
      TX(w);
      fwd_enc_pong(&w, m.n, m.data, m.data_len, m.has_data);
      send(d, &w, 0);
      break;
    }
    case FWD_MSG_PROBE: { /* 6.4.3 */
      TX(w);
      fwd_enc_probed(&w, m.n, m.data_len);
      send(d, &w, 0);
      break;
    }
    case FWD_MSG_QUERY: commit(d); send_status(d); break; /* 6.12 */
    case FWD_MSG_OFFER: on_offer(d, &m); break;
    case FWD_MSG_CHUNK: on_chunk(d, &m); break;
    case FWD_MSG_VERIFY: on_verify(d, m.sid); break;
    case FWD_MSG_ACTIVATE: on_activate(d, m.sid); break;
    case FWD_MSG_CONFIRM: on_confirm(d, &m); break;
    case FWD_MSG_ABORT: on_abort(d, m.sid); break;
    case FWD_MSG_TASKS: { /* 6.14.2: informational, RAM only, no reply */
      EV(j, 32);
      d->tasks = m.task_count;
      fwd_json_uint(&j, "count", m.task_count);
      fwd_event(d, "tasks", j_buf);
      break;
    }
  }
}

/* ---------------------------------------------------------------- 6.9.3 trial timeout */

void fwd_tick(fwd_device *d) {
  if (d->fatal || !d->rec.trial || !d->boot_trial) return;
  if ((uint32_t)(d->port->now_ms(d->port->ctx) - d->boot_ms) >= d->cfg.trial_timeout_ms) {
    fwd_event(d, "trial-timeout", "");
    fwd_event(d, "rebooting", "\"reason\":\"trial timeout\"");
    d->port->reboot(d->port->ctx, "trial timeout");
  }
}

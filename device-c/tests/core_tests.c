/*
 * fwd_core_tests - the core's state machine over an in-memory port (test/device-c/core.test.ts
 * runs it): transfer, acks and the missing list, a power cut that loses unflushed writes and the
 * resume from the durable record (also at another chunk size), verify failures and signatures,
 * activate / trial / confirm / seq, self-test and trial-timeout reverts, abort, the refusal order.
 * Prints one line per check; exit 0 when every check passed.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fwd_device.h"
#include "fwd_util.h"

/* ---------------------------------------------------------------- the in-memory board */

#define CAP (256u * 1024u)
#define MAXPUB 512
static struct {
  uint8_t flash[2][CAP];          /* durable bytes */
  uint8_t pending[2][CAP];        /* written, not flushed */
  uint8_t dirty[2][CAP];
  uint8_t kv[2][8192];
  int kv_len[2];
  uint32_t now;
  int reboot, self_test_fail;
  uint8_t pub[MAXPUB][4096];
  size_t pub_len[MAXPUB];
  int npub;
} B;

static uint32_t p_now(void *c) { (void)c; return B.now; }
static int p_publish(void *c, const uint8_t *b, size_t n, int q, int w) {
  (void)c; (void)q; (void)w;
  if (B.npub < MAXPUB && n <= sizeof B.pub[0]) { memcpy(B.pub[B.npub], b, n); B.pub_len[B.npub++] = n; }
  return 0;
}
static uint32_t p_cap(void *c, int s) { (void)c; (void)s; return CAP; }
static int p_erase(void *c, int s) { (void)c; memset(B.flash[s], 0xff, CAP); memset(B.dirty[s], 0, CAP); return 0; }
static int p_write(void *c, int s, uint32_t o, const uint8_t *d, size_t n) {
  (void)c;
  if (o + n > CAP) return -1;
  memcpy(B.pending[s] + o, d, n);
  memset(B.dirty[s] + o, 1, n);
  return 0;
}
static int p_read(void *c, int s, uint32_t o, uint8_t *d, size_t n) { (void)c; if (o + n > CAP) return -1; memcpy(d, B.flash[s] + o, n); return 0; }
static int p_flush(void *c, int s) {
  uint32_t i;
  (void)c;
  for (i = 0; i < CAP; i++) if (B.dirty[s][i]) { B.flash[s][i] = B.pending[s][i]; B.dirty[s][i] = 0; }
  return 0;
}
static int p_kv_read(void *c, int k, void *b, size_t n) { (void)c; if (!B.kv_len[k]) return -1; memcpy(b, B.kv[k], n < (size_t)B.kv_len[k] ? n : (size_t)B.kv_len[k]); return B.kv_len[k]; }
static int p_kv_write(void *c, int k, const void *b, size_t n) { (void)c; memcpy(B.kv[k], b, n); B.kv_len[k] = (int)n; return 0; }
static void p_reboot(void *c, const char *w) { (void)c; (void)w; B.reboot = 1; }
static void p_si(void *c, void *s) { (void)c; crypto_hash_sha256_init(s); }
static void p_su(void *c, void *s, const uint8_t *p, size_t n) { (void)c; crypto_hash_sha256_update(s, p, n); }
static void p_sf(void *c, void *s, uint8_t o[32]) { (void)c; crypto_hash_sha256_final(s, o); }
static int p_verify(void *c, const uint8_t s[64], const uint8_t *m, size_t n, const uint8_t k[32]) { (void)c; return crypto_sign_verify_detached(s, m, n, k); }
static int p_self_test(void *c, int s) { (void)c; (void)s; return B.self_test_fail; }

static const fwd_port PORT = { 0, p_publish, p_now, p_cap, p_erase, p_write, p_read, p_flush, p_kv_read, p_kv_write,
                               p_reboot, p_si, p_su, p_sf, p_verify, p_self_test, 0 };

/* a power cut: unflushed writes are lost; the records and flushed bytes stay */
static void power_cut(void) { memset(B.dirty, 0, sizeof B.dirty); B.reboot = 0; B.npub = 0; }

/* ---------------------------------------------------------------- checks */

static int failures, checks;
#define CHECK(cond, ...) do { checks++; if (cond) { printf("ok   "); } else { failures++; printf("FAIL "); } printf(__VA_ARGS__); printf("\n"); } while (0)

/* Field lookup in a published map: uint, text (copied), bool, or the count of an array. */
static int find(int i, const char *key, fwd_cbor_item *out, fwd_cbor_reader *r) {
  fwd_cbor_item it;
  uint32_t n, k;
  fwd_cbor_reader_init(r, B.pub[i], B.pub_len[i]);
  if (fwd_cbor_read(r, &it) || it.major != FWD_MAP) return 0;
  n = it.arg;
  for (k = 0; k < n; k++) {
    fwd_cbor_read(r, &it);
    if (it.arg == strlen(key) && memcmp(it.ptr, key, it.arg) == 0) return fwd_cbor_read(r, out) == 0;
    fwd_cbor_skip(r);
  }
  return 0;
}
static uint32_t U(int i, const char *key) { fwd_cbor_item v; fwd_cbor_reader r; return find(i, key, &v, &r) ? v.arg : 0xdeadbeef; }
static const char *T(int i, const char *key) {
  static char buf[8][300];
  static int n;
  fwd_cbor_item v;
  fwd_cbor_reader r;
  char *b = buf[n++ % 8];
  if (!find(i, key, &v, &r) || v.major != FWD_TEXT) return "";
  memcpy(b, v.ptr, v.arg);
  b[v.arg] = 0;
  return b;
}
static int Bool(int i, const char *key) { fwd_cbor_item v; fwd_cbor_reader r; return find(i, key, &v, &r) && v.arg == 21; }
/* the missing list of ack i as "64,128" */
static const char *Missing(int i) {
  static char out[4096];
  fwd_cbor_item v, e;
  fwd_cbor_reader r;
  uint32_t k;
  size_t len = 0;
  out[0] = 0;
  if (!find(i, "missing", &v, &r)) return "?";
  for (k = 0; k < v.arg; k++) { fwd_cbor_read(&r, &e); len += (size_t)snprintf(out + len, sizeof out - len, "%s%u", k ? "," : "", e.arg); }
  return out;
}
/* the last published message of type t, -1 if none */
static int last(const char *t) {
  int i;
  for (i = B.npub - 1; i >= 0; i--) if (strcmp(T(i, "t"), t) == 0) return i;
  return -1;
}
static int count(const char *t) {
  int i, n = 0;
  for (i = 0; i < B.npub; i++) if (strcmp(T(i, "t"), t) == 0) n++;
  return n;
}

/* ---------------------------------------------------------------- the gateway side */

static uint8_t image[64 * 1024];
static uint32_t image_size = sizeof image;
static char image_sha[65];
static uint32_t image_crc;
static uint8_t vendor_pk[32], vendor_sk[64], other_sk[64], other_pk[32];

typedef struct { const char *version; uint32_t sid, chunk, seq; int force, downgrade, sign; const uint8_t *sk; const char *hw; int bad_sig; uint32_t size; } offer_opts;

static void send_offer(fwd_device *d, offer_opts o) {
  uint8_t buf[2048], sb[1024], sig[64], kid[32];
  char sig_hex[129], kid_hex[17];
  fwd_cbor_writer w, s;
  fwd_down m;
  const uint8_t *sk = o.sk ? o.sk : vendor_sk;
  const char *hw = o.hw ? o.hw : "sensor-v1";
  uint32_t size = o.size ? o.size : image_size;
  memset(&m, 0, sizeof m);
  m.name.p = "sensor-fw"; m.name.n = 9;
  m.version.p = o.version; m.version.n = (uint16_t)strlen(o.version);
  m.hw[0].p = hw; m.hw[0].n = (uint16_t)strlen(hw); m.hw_count = 1;
  m.size = size; m.crc32 = image_crc; m.sha256.p = image_sha; m.sha256.n = 64; m.chunk = o.chunk ? o.chunk : 1024; m.seq = o.seq;
  fwd_cbor_writer_init(&s, sb, sizeof sb);
  fwd_enc_signed_bytes(&s, &m);
  crypto_sign_detached(sig, NULL, sb, s.len, sk);
  if (o.bad_sig) sig[0] ^= 1;
  fwd_hex_encode(sig, 64, sig_hex);
  crypto_hash_sha256(kid, sk + 32, 32); /* libsodium's sk holds the public key in its second half */
  fwd_hex_encode(kid, 8, kid_hex);
  fwd_cbor_writer_init(&w, buf, sizeof buf);
  fwd_cbor_map(&w, 9u + (o.force ? 1u : 0u) + (o.downgrade ? 1u : 0u) + (o.seq ? 1u : 0u) + (o.sign ? 2u : 0u));
  fwd_cbor_text(&w, "t"); fwd_cbor_text(&w, "offer");
  fwd_cbor_text(&w, "sid"); fwd_cbor_uint(&w, o.sid);
  fwd_cbor_text(&w, "name"); fwd_cbor_text(&w, "sensor-fw");
  fwd_cbor_text(&w, "version"); fwd_cbor_text(&w, o.version);
  fwd_cbor_text(&w, "hw"); fwd_cbor_array(&w, 1); fwd_cbor_text(&w, hw);
  fwd_cbor_text(&w, "size"); fwd_cbor_uint(&w, size);
  fwd_cbor_text(&w, "crc32"); fwd_cbor_uint(&w, image_crc);
  fwd_cbor_text(&w, "sha256"); fwd_cbor_text(&w, image_sha);
  fwd_cbor_text(&w, "chunk"); fwd_cbor_uint(&w, m.chunk);
  if (o.downgrade) { fwd_cbor_text(&w, "downgrade"); fwd_cbor_bool(&w, 1); }
  if (o.force) { fwd_cbor_text(&w, "force"); fwd_cbor_bool(&w, 1); }
  if (o.seq) { fwd_cbor_text(&w, "seq"); fwd_cbor_uint(&w, o.seq); }
  if (o.sign) { fwd_cbor_text(&w, "keyId"); fwd_cbor_text(&w, kid_hex); fwd_cbor_text(&w, "sig"); fwd_cbor_text(&w, sig_hex); }
  fwd_receive(d, buf, w.len);
}

static void send_chunk(fwd_device *d, uint32_t sid, uint32_t off, uint32_t chunk, int corrupt) {
  static uint8_t buf[70000];
  uint8_t data[8192];
  uint32_t n = image_size - off < chunk ? image_size - off : chunk;
  fwd_cbor_writer w;
  memcpy(data, image + off, n);
  fwd_cbor_writer_init(&w, buf, sizeof buf);
  fwd_cbor_map(&w, 5);
  fwd_cbor_text(&w, "t"); fwd_cbor_text(&w, "chunk");
  fwd_cbor_text(&w, "sid"); fwd_cbor_uint(&w, sid);
  fwd_cbor_text(&w, "off"); fwd_cbor_uint(&w, off);
  if (corrupt) data[0] ^= 0xff;
  fwd_cbor_text(&w, "data"); fwd_cbor_bytes(&w, data, n);
  fwd_cbor_text(&w, "crc"); fwd_cbor_uint(&w, fwd_crc32(0, image + off, n));
  fwd_receive(d, buf, w.len);
}

static void send_sid(fwd_device *d, const char *t, uint32_t sid) {
  uint8_t buf[64];
  fwd_cbor_writer w;
  fwd_cbor_writer_init(&w, buf, sizeof buf);
  fwd_cbor_map(&w, 2);
  fwd_cbor_text(&w, "t"); fwd_cbor_text(&w, t);
  fwd_cbor_text(&w, "sid"); fwd_cbor_uint(&w, sid);
  fwd_receive(d, buf, w.len);
}

static void send_confirm(fwd_device *d, const char *sha) {
  uint8_t buf[128];
  fwd_cbor_writer w;
  fwd_cbor_writer_init(&w, buf, sizeof buf);
  fwd_cbor_map(&w, 2);
  fwd_cbor_text(&w, "t"); fwd_cbor_text(&w, "confirm");
  fwd_cbor_text(&w, "sha256"); fwd_cbor_text(&w, sha);
  fwd_receive(d, buf, w.len);
}

static fwd_config config(int pinned) {
  fwd_config c;
  memset(&c, 0, sizeof c);
  c.hw = "sensor-v1";
  c.factory_name = "sensor-fw";
  c.factory_version = "1.0.0";
  c.factory_size = 4096;
  c.max_chunk = 4096;
  c.window = 8;
  c.trial_timeout_ms = 30000;
  if (pinned) { memcpy(c.pinned[0], vendor_pk, 32); c.pinned_count = 1; }
  return c;
}

static void blank_board(void) {
  uint32_t i;
  memset(&B, 0, sizeof B);
  for (i = 0; i < 4096; i++) B.flash[0][i] = (uint8_t)(i * 7);
}

static fwd_device dev;
static fwd_config cfg;

static void boot(void) {
  power_cut();
  if (fwd_init(&dev, &PORT, &cfg) != 0) { printf("FAIL boot\n"); exit(1); }
  fwd_connected(&dev);
}

/* send every chunk from `from` in order, `idle` after each `batch` */
static void send_all(uint32_t sid, uint32_t chunk, uint32_t from) {
  uint32_t off;
  for (off = from; off < image_size; off += chunk) {
    send_chunk(&dev, sid, off, chunk, 0);
    if (((off / chunk) % 4) == 3) fwd_idle(&dev);
  }
  fwd_idle(&dev);
}

static void update_to(const char *version, uint32_t sid, uint32_t seq) {
  send_offer(&dev, (offer_opts){ .version = version, .sid = sid, .seq = seq, .sign = 1 });
  send_all(sid, 1024, 0);
  send_sid(&dev, "verify", sid);
  send_sid(&dev, "activate", sid);
  boot();
  send_confirm(&dev, image_sha);
}

int main(void) {
  uint32_t i;
  int a;
  uint8_t sha[32];
  if (sodium_init() < 0) return 2;
  crypto_sign_keypair(vendor_pk, vendor_sk);
  crypto_sign_keypair(other_pk, other_sk);
  for (i = 0; i < image_size; i++) image[i] = (uint8_t)(i * 31 + (i >> 8));
  image_crc = fwd_crc32(0, image, image_size);
  crypto_hash_sha256(sha, image, image_size);
  fwd_hex_encode(sha, 32, image_sha);

  /* ---- a blank device: factory image confirmed in a, b empty; boot then status (6.2) */
  blank_board();
  cfg = config(1);
  boot();
  CHECK(B.npub == 2 && strcmp(T(0, "t"), "boot") == 0 && strcmp(T(1, "t"), "status") == 0, "connect: boot then status");
  CHECK(strcmp(T(1, "version"), "1.0.0") == 0 && strcmp(T(1, "slot"), "a") == 0 && !Bool(1, "trial") && U(1, "maxChunk") == 4096, "status of a blank device");
  B.npub = 0;
  fwd_connected(&dev);
  CHECK(B.npub == 1 && strcmp(T(0, "t"), "status") == 0, "a reconnect sends status only, no second boot (6.9.1)");

  /* ---- refusal order (6.5.3) */
  B.npub = 0;
  fwd_set_busy(&dev, 1);
  send_offer(&dev, (offer_opts){ .version = "1.1.0", .sid = 1, .hw = "other-hw" });
  CHECK(strcmp(T(last("reject"), "code"), "busy") == 0, "busy comes first");
  send_offer(&dev, (offer_opts){ .version = "1.1.0", .sid = 2, .hw = "other-hw", .force = 1 });
  CHECK(strcmp(T(last("reject"), "code"), "incompatible") == 0, "force lifts busy; then incompatible");
  fwd_set_busy(&dev, 0);
  send_offer(&dev, (offer_opts){ .version = "1.0.0", .sid = 3 });
  CHECK(strcmp(T(last("reject"), "code"), "not-newer") == 0, "the running version: not-newer");
  send_offer(&dev, (offer_opts){ .version = "0.9.0", .sid = 4 });
  CHECK(strcmp(T(last("reject"), "code"), "not-newer") == 0, "older without downgrade: not-newer");
  send_offer(&dev, (offer_opts){ .version = "1.1.0", .sid = 5, .size = CAP + 1 });
  CHECK(strcmp(T(last("reject"), "code"), "no-space") == 0, "larger than the slot: no-space");
  CHECK(U(last("reject"), "sid") == 5, "reject carries the offer's sid");

  /* ---- transfer: accept, a gap and a bad chunk in the missing list (6.6.3, 6.6.4) */
  B.npub = 0;
  send_offer(&dev, (offer_opts){ .version = "1.1.0", .sid = 10, .seq = 3, .sign = 1 });
  a = last("accept");
  CHECK(a >= 0 && U(a, "next") == 0 && U(a, "chunk") == 1024 && U(a, "window") == 8, "accept: next 0, chunk min(offer, max), window");
  CHECK(last("status") > a, "status after accepting a new image");
  send_chunk(&dev, 10, 0, 1024, 0);
  send_chunk(&dev, 10, 2048, 1024, 0);
  send_chunk(&dev, 10, 3072, 1024, 1);
  fwd_idle(&dev);
  a = last("ack");
  CHECK(count("ack") == 1 && U(a, "next") == 1024 && strcmp(Missing(a), "1024,3072") == 0, "one ack per batch: next 1024, missing the gap and the bad chunk (%s)", Missing(a));
  send_chunk(&dev, 99, 1024, 1024, 0);
  fwd_idle(&dev);
  CHECK(count("ack") == 1, "a chunk with another sid is ignored, not acked");
  send_chunk(&dev, 10, 0, 1024, 0);
  fwd_idle(&dev);
  CHECK(count("ack") == 2 && strcmp(Missing(last("ack")), "1024") == 0, "a duplicate is acked");

  /* ---- power cut with unflushed chunks: not claimed; resume at the durable next (6.5.4 case 2) */
  send_chunk(&dev, 10, 1024, 1024, 0);
  send_chunk(&dev, 10, 3072, 1024, 0);   /* written, not flushed */
  boot();                                 /* power cut before fwd_idle */
  send_offer(&dev, (offer_opts){ .version = "1.1.0", .sid = 11, .seq = 3, .sign = 1 });
  a = last("accept");
  CHECK(U(a, "next") == 1024, "after a power cut the offer resumes at the durable next, unflushed chunks not claimed (next %u)", U(a, "next"));
  send_chunk(&dev, 10, 1024, 1024, 0);
  fwd_idle(&dev);
  CHECK(count("ack") == 0, "chunks of the old sid are ignored after the resume");
  /* regroup at 2048: held 0 and 2048 at 1024 -> chunk 0 (0..2047) needs 1024 too: not held */
  send_chunk(&dev, 11, 1024, 1024, 0);
  fwd_idle(&dev);             /* held 0,1024,2048 at 1024 */
  {
    fwd_down dummy;
    (void)dummy;
  }
  B.npub = 0;
  send_offer(&dev, (offer_opts){ .version = "1.1.0", .sid = 12, .chunk = 2048, .seq = 3, .sign = 1 });
  a = last("accept");
  CHECK(U(a, "chunk") == 2048 && U(a, "next") == 2048, "regrouped at 2048: the chunk of 0..2047 is held, next 2048 (next %u)", U(a, "next"));
  send_all(12, 2048, 2048);
  a = last("ack");
  CHECK(U(a, "next") == image_size && strcmp(Missing(a), "") == 0, "every chunk held: next = size, missing empty");
  send_sid(&dev, "verify", 11);
  CHECK(!Bool(last("verified"), "ok") && strcmp(T(last("verified"), "code"), "incomplete") == 0, "verify with an old sid: incomplete");
  send_sid(&dev, "verify", 12);
  CHECK(Bool(last("verified"), "ok"), "verify: size, CRC-32, SHA-256 and signature pass");
  send_sid(&dev, "verify", 12);
  CHECK(Bool(last("verified"), "ok"), "a repeated verify is ok (ready under this sid)");

  /* ---- ready survives a reset; a re-offer is case 1 (next = size) */
  boot();
  send_offer(&dev, (offer_opts){ .version = "1.1.0", .sid = 13, .seq = 3, .sign = 1 });
  CHECK(U(last("accept"), "next") == image_size, "a ready image re-offered: next = size");
  send_sid(&dev, "activate", 12);
  CHECK(!B.reboot, "activate with another sid is ignored");
  send_sid(&dev, "activate", 13);
  CHECK(B.reboot && U(last("activated"), "sid") == 13 && strcmp(T(last("activated"), "slot"), "b") == 0, "activate: activated, then reboot");

  /* ---- trial boot, confirm, seq raised (6.9.2 rule 2, 6.10.1, 6.5.7) */
  boot();
  a = 0;
  CHECK(strcmp(T(0, "t"), "boot") == 0 && Bool(0, "trial") && !Bool(0, "reverted") && strcmp(T(0, "slot"), "b") == 0 && strcmp(T(0, "version"), "1.1.0") == 0, "trial boot report");
  CHECK(Bool(1, "trial") && strcmp(T(1, "t"), "status") == 0, "status says trial");
  send_offer(&dev, (offer_opts){ .version = "1.2.0", .sid = 20, .force = 1 });
  CHECK(strcmp(T(last("reject"), "code"), "busy") == 0, "in trial: busy, also with force");
  send_confirm(&dev, "0000000000000000000000000000000000000000000000000000000000000000");
  CHECK(last("confirmed") < 0, "confirm of another image: ignored");
  send_confirm(&dev, image_sha);
  CHECK(last("confirmed") >= 0 && strcmp(T(last("confirmed"), "version"), "1.1.0") == 0, "confirmed");
  send_confirm(&dev, image_sha);
  CHECK(count("confirmed") == 2, "a repeated confirm is answered again");
  send_offer(&dev, (offer_opts){ .version = "1.2.0", .sid = 21, .seq = 2, .sign = 1 });
  CHECK(strcmp(T(last("reject"), "code"), "seq-rollback") == 0, "seq 2 below the confirmed 3: seq-rollback");

  /* ---- signatures (5.4.3): unsigned, unknown key, bad signature -> verify code signature */
  {
    struct { offer_opts o; const char *why; } cases[] = {
      { { .version = "1.2.0", .sid = 30, .seq = 3 }, "unsigned" },
      { { .version = "1.2.0", .sid = 31, .seq = 3, .sign = 1, .sk = other_sk }, "unknown-key" },
      { { .version = "1.2.0", .sid = 32, .seq = 3, .sign = 1, .bad_sig = 1 }, "bad-signature" },
    };
    unsigned k;
    for (k = 0; k < 3; k++) {
      send_offer(&dev, cases[k].o);
      send_all(cases[k].o.sid, 1024, 0);
      send_sid(&dev, "verify", cases[k].o.sid);
      a = last("verified");
      CHECK(!Bool(a, "ok") && strcmp(T(a, "code"), "signature") == 0 && strncmp(T(a, "reason"), cases[k].why, strlen(cases[k].why)) == 0,
            "verify refuses %s (%s)", cases[k].why, T(a, "reason"));
    }
    CHECK(dev.rec.slots[0].state == FWD_EMPTY, "the refused image was discarded: slot a empty");
  }

  /* ---- abort: before any chunk the slot is restored; after one it is empty (6.11.1) */
  blank_board();
  boot();
  send_offer(&dev, (offer_opts){ .version = "1.1.0", .sid = 40, .seq = 1, .sign = 1 });
  CHECK(dev.rec.slots[1].state == FWD_RECEIVING, "receiving after the offer");
  dev.rec.slots[1].state = FWD_RECEIVING;
  send_sid(&dev, "abort", 40);
  CHECK(last("aborted") >= 0 && dev.rec.slots[1].state == FWD_EMPTY, "abort before a chunk: back to empty (as before the offer)");
  send_sid(&dev, "abort", 77);
  CHECK(count("aborted") == 2, "abort of an unknown sid is answered too");

  /* ---- self-test failure at the trial boot: revert with the reason (6.9.2 rule 2) */
  update_to("1.1.0", 50, 1);
  CHECK(last("confirmed") >= 0, "updated to 1.1.0 in slot b");
  send_offer(&dev, (offer_opts){ .version = "1.2.0", .sid = 48, .seq = 1, .sign = 1 });
  send_sid(&dev, "abort", 48);
  CHECK(dev.rec.slots[0].state == FWD_CONFIRMED && strcmp(dev.rec.slots[0].version, "1.0.0") == 0,
        "abort before a chunk: the confirmed fallback in slot a is back, not erased");
  send_offer(&dev, (offer_opts){ .version = "1.2.0", .sid = 49, .seq = 1, .sign = 1 });
  send_chunk(&dev, 49, 0, 1024, 0);
  fwd_idle(&dev);
  send_sid(&dev, "abort", 49);
  CHECK(dev.rec.slots[0].state == FWD_EMPTY && B.flash[0][0] == 0xff, "abort after a chunk: slot a empty and erased");
  /* now b runs 1.1.0; a second update into a */
  image[100] ^= 1;
  image_crc = fwd_crc32(0, image, image_size);
  crypto_hash_sha256(sha, image, image_size);
  fwd_hex_encode(sha, 32, image_sha);
  send_offer(&dev, (offer_opts){ .version = "1.2.0", .sid = 51, .seq = 1, .sign = 1 });
  send_all(51, 1024, 0);
  send_sid(&dev, "verify", 51);
  send_sid(&dev, "activate", 51);
  B.self_test_fail = 1;
  boot();
  B.self_test_fail = 0;
  CHECK(Bool(0, "reverted") && strcmp(T(0, "reason"), "self-test failed") == 0 && strcmp(T(0, "version"), "1.1.0") == 0 && strcmp(T(0, "slot"), "b") == 0,
        "self-test failure: back on 1.1.0 in b, reverted, reason (%s)", T(0, "reason"));
  CHECK(dev.rec.slots[0].state == FWD_BAD && strcmp(T(1, "t"), "status") == 0, "the failed slot is bad, and status reports it");

  /* ---- trial timeout -> reboot -> rule 1 revert (6.9.3) */
  send_offer(&dev, (offer_opts){ .version = "1.2.0", .sid = 52, .seq = 1, .sign = 1 });
  CHECK(U(last("accept"), "next") == 0, "a bad slot is not resumed: next 0");
  send_all(52, 1024, 0);
  send_sid(&dev, "verify", 52);
  send_sid(&dev, "activate", 52);
  boot();
  CHECK(Bool(0, "trial"), "trial of 1.2.0");
  B.now += 29999;
  fwd_tick(&dev);
  CHECK(!B.reboot, "no reboot before the trial timeout");
  B.now += 1;
  fwd_tick(&dev);
  CHECK(B.reboot, "reboot at the trial timeout");
  boot();
  CHECK(Bool(0, "reverted") && strcmp(T(0, "version"), "1.1.0") == 0 && strstr(T(0, "reason"), "self-test") == NULL,
        "unconfirmed trial reverted at the next boot, reason without self-test (%s)", T(0, "reason"));

  /* ---- the missing list is capped at 256, gaps first (6.6.4) */
  {
    uint32_t k;
    blank_board();
    boot();
    image_size = 64 * 1024;
    send_offer(&dev, (offer_opts){ .version = "1.1.0", .sid = 60, .chunk = 64, .seq = 1, .sign = 1 });
    for (k = 1; k < 600; k += 2) { send_chunk(&dev, 60, k * 64, 64, 0); if (k % 15 == 0) fwd_idle(&dev); }
    fwd_idle(&dev);
    B.npub = 0;
    send_chunk(&dev, 60, 599 * 64, 64, 0);
    fwd_idle(&dev);
    a = last("ack");
    CHECK(a >= 0 && strncmp(Missing(a), "0,128,256", 9) == 0, "gaps listed from next");
    {
      const char *m = Missing(a);
      int commas = 0;
      for (; *m; m++) commas += *m == ',';
      CHECK(commas + 1 == 256, "at most 256 entries (%d)", commas + 1);
    }
  }

  printf("%d checks, %d failed\n", checks, failures);
  return failures ? 1 : 0;
}

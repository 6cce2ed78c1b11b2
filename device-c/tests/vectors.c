#define _DEFAULT_SOURCE
/*
 * fwd_vectors - the core's codec against the vectors of docs/protocol.md section 10.6 (and the
 * signed bytes of 10.8). test/device-c/vectors.test.ts parses the vectors from the document and
 * feeds this program one request per line on stdin (fields separated by tabs); it answers one
 * line each:
 *
 *   down <hex>            -> the message as the core decoded it, as JSON (or "error <result> <field>")
 *   up <k=v>...           -> the hex the core encodes for the message with these fields
 *   signed <k=v>...       -> the hex of the signed bytes (section 5.4.1) of these offer fields
 *
 * Keys are flattened (slots.a.state=confirmed); arrays are comma-separated (missing=64,128).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fwd_msg.h"
#include "fwd_util.h"

static uint8_t in[FWD_MAX_OTA_MESSAGE + 16];
static char line[1 << 18];
static char *keys[64], *vals[64];
static int nkv;

static const char *get(const char *k) {
  int i;
  for (i = 0; i < nkv; i++) if (strcmp(keys[i], k) == 0) return vals[i];
  return NULL;
}
static uint32_t u(const char *k) { const char *v = get(k); return v ? (uint32_t)strtoul(v, NULL, 10) : 0; }
static int b(const char *k) { const char *v = get(k); return v && strcmp(v, "true") == 0; }

static void print_str(const char *k, fwd_str s, int *first) {
  uint16_t i;
  printf("%s\"%s\":\"", *first ? "" : ",", k);
  for (i = 0; i < s.n; i++) {
    if (s.p[i] == '"' || s.p[i] == '\\') putchar('\\');
    putchar(s.p[i]);
  }
  putchar('"');
  *first = 0;
}
static void print_u(const char *k, uint32_t v, int *first) { printf("%s\"%s\":%u", *first ? "" : ",", k, v); *first = 0; }
static void print_bytes(const char *k, const uint8_t *p, uint32_t n, int *first) {
  uint32_t i;
  printf("%s\"%s\":{\"$bytes\":\"", *first ? "" : ",", k);
  for (i = 0; i < n; i++) printf("%02x", p[i]);
  printf("\"}");
  *first = 0;
}
static void print_bool(const char *k, int v, int *first) { printf("%s\"%s\":%s", *first ? "" : ",", k, v ? "true" : "false"); *first = 0; }

static const char *const names[] = { "ping", "probe", "query", "offer", "chunk", "verify", "activate", "confirm", "abort", "tasks" };

/* The decoded struct as JSON, fields in the spec's table order, optional ones only when present. */
static void down(const char *hex) {
  size_t n = strlen(hex) / 2;
  fwd_down m;
  fwd_dec_result r;
  int first = 1, i;
  if (fwd_hex_decode(hex, n * 2, in)) { printf("error hex\n"); return; }
  r = fwd_decode_down(in, n, &m);
  if (r != FWD_DEC_OK) { printf("error %d %s\n", (int)r, m.bad_field ? m.bad_field : "-"); return; }
  printf("{\"t\":\"%s\"", names[m.type]);
  first = 0;
  switch (m.type) {
    case FWD_MSG_PING: print_u("n", m.n, &first); if (m.has_data) print_bytes("pad", m.data, m.data_len, &first); break;
    case FWD_MSG_PROBE: print_u("n", m.n, &first); print_bytes("data", m.data, m.data_len, &first); break;
    case FWD_MSG_QUERY: break;
    case FWD_MSG_OFFER:
      print_u("sid", m.sid, &first); print_str("name", m.name, &first); print_str("version", m.version, &first);
      printf(",\"hw\":[");
      for (i = 0; i < m.hw_count; i++) { int f = 1; if (i) putchar(','); (void)f; printf("\"%.*s\"", m.hw[i].n, m.hw[i].p); }
      printf("]");
      print_u("size", m.size, &first); print_u("crc32", m.crc32, &first); print_str("sha256", m.sha256, &first); print_u("chunk", m.chunk, &first);
      if (m.downgrade) print_bool("downgrade", 1, &first);
      if (m.force) print_bool("force", 1, &first);
      if (m.seq) print_u("seq", m.seq, &first);
      if (m.has_sig) { print_str("keyId", m.key_id, &first); print_str("sig", m.sig, &first); }
      break;
    case FWD_MSG_CHUNK:
      print_u("sid", m.sid, &first); print_u("off", m.off, &first); print_bytes("data", m.data, m.data_len, &first); print_u("crc", m.crc, &first);
      break;
    case FWD_MSG_VERIFY: case FWD_MSG_ACTIVATE: print_u("sid", m.sid, &first); break;
    case FWD_MSG_CONFIRM: print_str("sha256", m.sha256, &first); break;
    case FWD_MSG_ABORT: print_u("sid", m.sid, &first); if (m.reason.p) print_str("reason", m.reason, &first); break;
    case FWD_MSG_TASKS: print_u("tasks", m.task_count, &first); break; /* validated whole, kept as a count (section 6.14.2) */
  }
  printf("}\n");
}

static void hexout(const fwd_cbor_writer *w) {
  size_t i;
  if (w->err) { printf("error full\n"); return; }
  for (i = 0; i < w->len; i++) printf("%02x", w->buf[i]);
  printf("\n");
}

static uint32_t list(const char *k, uint32_t *out, uint32_t max) {
  const char *v = get(k);
  uint32_t n = 0;
  while (v && *v && n < max) {
    out[n++] = (uint32_t)strtoul(v, (char **)&v, 10);
    if (*v == ',') v++;
  }
  return n;
}

static void up(void) {
  static uint8_t buf[4096];
  static uint32_t missing[256];
  const char *t = get("t");
  fwd_cbor_writer w;
  fwd_cbor_writer_init(&w, buf, sizeof buf);
  if (!t) { printf("error no t\n"); return; }
  if (strcmp(t, "status") == 0) {
    fwd_status_msg s;
    int i;
    char k[32];
    s.hw = get("hw"); s.version = get("version"); s.floor = get("floor"); s.slot = get("slot")[0];
    for (i = 0; i < 2; i++) {
      snprintf(k, sizeof k, "slots.%c.state", 'a' + i); s.slots[i].state = get(k);
      snprintf(k, sizeof k, "slots.%c.version", 'a' + i); s.slots[i].version = get(k);
      snprintf(k, sizeof k, "slots.%c.sha256", 'a' + i); s.slots[i].sha256_hex = get(k);
    }
    s.max_chunk = u("maxChunk"); s.busy = b("busy"); s.trial = b("trial");
    fwd_enc_status(&w, &s);
  } else if (strcmp(t, "boot") == 0) {
    fwd_enc_boot(&w, get("version"), get("slot")[0], get("sha256"), b("trial"), b("reverted"), get("reason"));
  } else if (strcmp(t, "pong") == 0) {
    uint8_t pad[256];
    const char *p = get("pad");
    size_t n = p ? strlen(p) / 2 : 0;
    if (p) fwd_hex_decode(p, n * 2, pad);
    fwd_enc_pong(&w, u("n"), pad, (uint32_t)n, p != NULL);
  } else if (strcmp(t, "probed") == 0) {
    fwd_enc_probed(&w, u("n"), u("size"));
  } else if (strcmp(t, "accept") == 0) {
    fwd_enc_accept(&w, u("sid"), u("next"), u("chunk"), u("window"));
  } else if (strcmp(t, "reject") == 0) {
    fwd_enc_reject(&w, u("sid"), get("code"), get("reason"));
  } else if (strcmp(t, "ack") == 0) {
    uint32_t n = list("missing", missing, 256);
    fwd_enc_ack(&w, u("sid"), u("next"), missing, n);
  } else if (strcmp(t, "verified") == 0) {
    fwd_enc_verified(&w, u("sid"), b("ok"), get("code"), get("reason"));
  } else if (strcmp(t, "activated") == 0) {
    fwd_enc_activated(&w, u("sid"), get("slot")[0]);
  } else if (strcmp(t, "confirmed") == 0) {
    fwd_enc_confirmed(&w, get("sha256"), get("version"));
  } else if (strcmp(t, "aborted") == 0) {
    fwd_enc_aborted(&w, u("sid"));
  } else {
    printf("error unknown type %s\n", t);
    return;
  }
  hexout(&w);
}

static void signed_bytes(void) {
  static uint8_t buf[2048];
  fwd_down m;
  fwd_cbor_writer w;
  const char *hw = get("hw");
  memset(&m, 0, sizeof m);
#define S(f, k) do { const char *v_ = get(k); m.f.p = v_; m.f.n = (uint16_t)(v_ ? strlen(v_) : 0); } while (0)
  S(name, "name"); S(version, "version"); S(sha256, "sha256");
  while (hw && *hw && m.hw_count < FWD_MAX_HW_MODELS) {
    const char *e = strchr(hw, ',');
    m.hw[m.hw_count].p = hw;
    m.hw[m.hw_count].n = (uint16_t)(e ? (size_t)(e - hw) : strlen(hw));
    m.hw_count++;
    hw = e ? e + 1 : NULL;
  }
  m.size = u("size"); m.crc32 = u("crc32"); m.chunk = u("chunk"); m.seq = u("seq");
  fwd_cbor_writer_init(&w, buf, sizeof buf);
  fwd_enc_signed_bytes(&w, &m);
  hexout(&w);
}

int main(void) {
  while (fgets(line, sizeof line, stdin)) {
    char *p = line, *tok;
    line[strcspn(line, "\n")] = 0;
    tok = strsep(&p, "\t");
    nkv = 0;
    if (strcmp(tok, "down") == 0) { down(p ? p : ""); fflush(stdout); continue; }
    while ((tok = strsep(&p, "\t")) != NULL && nkv < 64) {
      char *eq = strchr(tok, '=');
      if (!eq) continue;
      *eq = 0;
      keys[nkv] = tok;
      vals[nkv++] = eq + 1;
    }
    if (strcmp(line, "up") == 0) up();
    else if (strcmp(line, "signed") == 0) signed_bytes();
    else printf("error request\n");
    fflush(stdout);
  }
  return 0;
}

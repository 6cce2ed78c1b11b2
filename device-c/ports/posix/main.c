/*
 * fwdevice - one fwgate device on POSIX: the portable core (device-c/core) over libmosquitto
 * (MQTT, TLS, password login), files (slots and the durable records, fsync'd) and libsodium
 * (SHA-256, Ed25519). A reboot re-executes the program with the same arguments and files; a
 * power cut is SIGKILL. Console: one JSON line per event on stdout, as `fwsim --json`.
 *
 *   fwdevice --broker mqtt://127.0.0.1:1883 --id dev-c-001 --dir data/dev-c-001 [options]
 *
 * docs/device-guide.md describes the options; exit codes: 0 stopped by SIGINT/SIGTERM,
 * 1 runtime error, 2 usage error.
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <mosquitto.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "fwd_device.h"
#include "fwd_util.h"

#define SLOT_CAPACITY (16u * 1024u * 1024u)

static struct {
  char **argv;
  const char *id, *dir, *ca, *password, *hw, *version, *floor;
  char host[256];
  int port, tls;
  uint32_t boot_delay_ms, factory_size;
  int busy, fail_self_test;
  uint32_t corrupt_chunk, chunks_seen;
  int fds[2];
  struct mosquitto *mosq;
  int connected, stopping, reboot_pending, ack_mid, acked;
  char reboot_why[64];
  char down[128], up[128];
  fwd_device dev;
  fwd_config cfg;
} g = { .fds = { -1, -1 } };

static volatile sig_atomic_t got_signal, toggle_busy;

/* ---------------------------------------------------------------- console */

static void console(const char *type, const char *json) {
  struct timespec ts;
  struct tm tm;
  char when[32];
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
  printf("{\"ts\":\"%s.%03ldZ\",\"type\":\"%s\",\"id\":\"%s\"%s%s}\n", when, ts.tv_nsec / 1000000, type, g.id, json && *json ? "," : "", json ? json : "");
  fflush(stdout);
}

static void die(int code, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "fwdevice: ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n");
  exit(code);
}

/* ---------------------------------------------------------------- port: files */

static void path_of(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", g.dir, name); }

static int sync_dir(void) {
  int fd = open(g.dir, O_RDONLY | O_DIRECTORY);
  int r;
  if (fd < 0) return -1;
  r = fsync(fd);
  close(fd);
  return r;
}

static int slot_fd(int slot) {
  if (g.fds[slot] < 0) {
    char p[PATH_MAX];
    path_of(p, sizeof p, slot ? "slot-b.bin" : "slot-a.bin");
    g.fds[slot] = open(p, O_RDWR | O_CREAT, 0644);
  }
  return g.fds[slot];
}

static uint32_t p_capacity(void *ctx, int slot) { (void)ctx; (void)slot; return SLOT_CAPACITY; }

static int p_erase(void *ctx, int slot) {
  int fd = slot_fd(slot);
  (void)ctx;
  if (fd < 0 || ftruncate(fd, 0) != 0) return -1;
  return fsync(fd);
}

static int p_write(void *ctx, int slot, uint32_t off, const uint8_t *data, size_t len) {
  int fd = slot_fd(slot);
  (void)ctx;
  while (fd >= 0 && len) {
    ssize_t n = pwrite(fd, data, len, off);
    if (n < 0) { if (errno == EINTR) continue; return -1; }
    data += n; len -= (size_t)n; off += (uint32_t)n;
  }
  return fd < 0 ? -1 : 0;
}

static int p_read(void *ctx, int slot, uint32_t off, uint8_t *data, size_t len) {
  int fd = slot_fd(slot);
  (void)ctx;
  while (fd >= 0 && len) {
    ssize_t n = pread(fd, data, len, off);
    if (n < 0) { if (errno == EINTR) continue; return -1; }
    if (n == 0) return -1; /* shorter than asked: the check fails on `size` */
    data += n; len -= (size_t)n; off += (uint32_t)n;
  }
  return fd < 0 ? -1 : 0;
}

/* Durable (section 6.6.4): fsync of the slot file. A SIGKILL keeps every write made; fsync makes
 * the held chunks survive a host crash too, which is what "durable" means for a file. */
static int p_flush(void *ctx, int slot) { (void)ctx; return slot_fd(slot) < 0 ? -1 : fsync(g.fds[slot]); }

static const char *kv_name(int key) { return key == FWD_KV_STATE ? "state.rec" : "transfer.rec"; }

static int p_kv_read(void *ctx, int key, void *buf, size_t len) {
  char p[PATH_MAX];
  int fd, n;
  (void)ctx;
  path_of(p, sizeof p, kv_name(key));
  fd = open(p, O_RDONLY);
  if (fd < 0) return -1;
  n = (int)read(fd, buf, len);
  close(fd);
  return n;
}

/* Atomic and durable: a temporary file, fsync, rename over the record, fsync of the folder. */
static int p_kv_write(void *ctx, int key, const void *buf, size_t len) {
  char p[PATH_MAX], tmp[PATH_MAX];
  int fd, ok;
  (void)ctx;
  path_of(p, sizeof p, kv_name(key));
  if (snprintf(tmp, sizeof tmp, "%s.tmp", p) >= (int)sizeof tmp) return -1;
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return -1;
  ok = write(fd, buf, len) == (ssize_t)len && fsync(fd) == 0;
  close(fd);
  if (!ok || rename(tmp, p) != 0) return -1;
  return sync_dir();
}

/* ---------------------------------------------------------------- port: crypto, clock */

static void p_sha_init(void *ctx, void *st) { (void)ctx; crypto_hash_sha256_init((crypto_hash_sha256_state *)st); }
static void p_sha_update(void *ctx, void *st, const uint8_t *p, size_t n) { (void)ctx; crypto_hash_sha256_update((crypto_hash_sha256_state *)st, p, n); }
static void p_sha_final(void *ctx, void *st, uint8_t out[32]) { (void)ctx; crypto_hash_sha256_final((crypto_hash_sha256_state *)st, out); }
static int p_verify(void *ctx, const uint8_t sig[64], const uint8_t *m, size_t n, const uint8_t pk[32]) {
  (void)ctx;
  return crypto_sign_verify_detached(sig, m, n, pk);
}

static uint32_t p_now(void *ctx) {
  struct timespec ts;
  (void)ctx;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint32_t)((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
}

static void sleep_ms(uint32_t ms) {
  struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !got_signal) {}
}

/* The sample image header (firmware-samples/README.md) decides the simulated self-test; the
 * --fail-self-test switch fails it whatever the header says. Not part of the protocol. */
static int p_self_test(void *ctx, int slot) {
  uint8_t head[1024];
  size_t n;
  (void)ctx;
  if (g.fail_self_test) return 1;
  memset(head, 0, sizeof head);
  if (p_read(0, slot, 0, head, 512) != 0) return 0;
  head[512] = 0;
  n = strnlen((const char *)head, 512);
  if (n > 10 && memcmp(head, "FWSAMPLE1 ", 10) == 0 && strstr((const char *)head, "\"selftest\":\"fail\"")) return 1;
  return 0;
}

/* ---------------------------------------------------------------- port: MQTT */

static int p_publish(void *ctx, const uint8_t *buf, size_t len, int qos, int wait_ack) {
  int mid = 0, rc;
  (void)ctx;
  rc = mosquitto_publish(g.mosq, &mid, g.up, (int)len, buf, qos, false);
  if (wait_ack) { g.ack_mid = mid; g.acked = rc != MOSQ_ERR_SUCCESS; }
  return rc == MOSQ_ERR_SUCCESS ? 0 : -1;
}

/* The core asks for a reboot from inside a message callback: note it; the main loop waits for
 * the PUBACK of `activated` (bounded), disconnects and re-executes the program. */
static void p_reboot(void *ctx, const char *why) {
  (void)ctx;
  g.reboot_pending = 1;
  snprintf(g.reboot_why, sizeof g.reboot_why, "%s", why);
}

static void p_event(void *ctx, const char *type, const char *json) { (void)ctx; console(type, json); }

static const fwd_port port = {
  0, p_publish, p_now, p_capacity, p_erase, p_write, p_read, p_flush, p_kv_read, p_kv_write,
  p_reboot, p_sha_init, p_sha_update, p_sha_final, p_verify, p_self_test, p_event,
};

static void on_connect(struct mosquitto *m, void *u, int rc) {
  (void)u;
  if (rc != 0) {
    char j[64];
    snprintf(j, sizeof j, "\"message\":\"CONNACK %d (%s)\"", rc, mosquitto_connack_string(rc));
    console("error", j);
    return;
  }
  mosquitto_subscribe(m, NULL, g.down, 1); /* section 6.2 step 1 */
}

static void on_subscribe(struct mosquitto *m, void *u, int mid, int n, const int *qos) {
  static int reconnect;
  (void)m; (void)u; (void)mid; (void)n; (void)qos;
  console("connected", reconnect ? "\"reconnect\":true" : "\"reconnect\":false");
  reconnect = 1;
  g.connected = 1;
  fwd_connected(&g.dev); /* steps 2 and 3: boot (once per boot), status */
}

static void on_disconnect(struct mosquitto *m, void *u, int rc) {
  (void)m; (void)u; (void)rc;
  if (g.connected) console("disconnected", "");
  g.connected = 0;
}

static void on_publish(struct mosquitto *m, void *u, int mid) {
  (void)m; (void)u;
  if (mid == g.ack_mid) g.acked = 1;
}

static uint8_t corrupt_buf[FWD_MAX_OTA_MESSAGE];

static void on_message(struct mosquitto *m, void *u, const struct mosquitto_message *msg) {
  const uint8_t *p = msg->payload;
  (void)m; (void)u;
  if (g.reboot_pending || g.stopping) return;
  if (g.corrupt_chunk && msg->payloadlen > 0 && (size_t)msg->payloadlen <= sizeof corrupt_buf) {
    fwd_down d;
    if (fwd_decode_down(p, (size_t)msg->payloadlen, &d) == FWD_DEC_OK && d.type == FWD_MSG_CHUNK && ++g.chunks_seen == g.corrupt_chunk) {
      memcpy(corrupt_buf, p, (size_t)msg->payloadlen);
      corrupt_buf[d.data - p] ^= 0xff; /* fault: one byte of the n-th chunk flipped, once */
      p = corrupt_buf;
      g.corrupt_chunk = 0;
      setenv("FWDEVICE_CORRUPT_DONE", "1", 1);
    }
  }
  fwd_receive(&g.dev, p, (size_t)msg->payloadlen);
}

/* ---------------------------------------------------------------- start-up */

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  char *buf;
  long n;
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  n = ftell(f);
  fseek(f, 0, SEEK_SET);
  buf = malloc((size_t)n + 1);
  if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) { fclose(f); free(buf); return NULL; }
  buf[n] = 0;
  fclose(f);
  if (len) *len = (size_t)n;
  return buf;
}

/* A public key: SPKI PEM (the last 32 bytes of the DER), or 32 raw bytes in base64 or hex (section 5.4.2). */
static int load_key(const char *path, uint8_t out[32]) {
  size_t n, bin_len = 0;
  char *text = read_file(path, &n), *b, *e;
  uint8_t bin[256];
  if (!text) return -1;
  b = strstr(text, "-----BEGIN PUBLIC KEY-----");
  if (b) {
    b += strlen("-----BEGIN PUBLIC KEY-----");
    e = strstr(b, "-----END");
    if (!e || sodium_base642bin(bin, sizeof bin, b, (size_t)(e - b), " \r\n\t", &bin_len, NULL, sodium_base64_VARIANT_ORIGINAL) != 0 || bin_len < 32) { free(text); return -1; }
    memcpy(out, bin + bin_len - 32, 32);
  } else {
    while (n && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == ' ')) text[--n] = 0;
    if (sodium_hex2bin(out, 32, text, n, NULL, &bin_len, NULL) != 0 || bin_len != 32) {
      if (sodium_base642bin(bin, sizeof bin, text, n, NULL, &bin_len, NULL, sodium_base64_VARIANT_ORIGINAL) != 0 || bin_len != 32) { free(text); return -1; }
      memcpy(out, bin, 32);
    }
  }
  free(text);
  return 0;
}

/* The password for `id` from a JSON object of id -> password (fwsim --credentials). */
static char *credential(const char *path, const char *id) {
  char *text = read_file(path, NULL), key[80], *p, *q, *out;
  if (!text) die(2, "--credentials: cannot read %s", path);
  snprintf(key, sizeof key, "\"%s\"", id);
  p = strstr(text, key);
  if (!p) { free(text); return NULL; }
  p = strchr(p + strlen(key), '"');
  q = p ? strchr(p + 1, '"') : NULL;
  if (!p || !q) die(2, "--credentials: %s: no password string for %s", path, id);
  out = strndup(p + 1, (size_t)(q - p - 1));
  free(text);
  return out;
}

/* A blank device: a factory image in slot a (a sample image, firmware-samples/README.md). */
static void provision_factory(void) {
  char p[PATH_MAX], head[256];
  uint8_t *img;
  uint32_t i, x = 0x9e3779b9u;
  int n;
  path_of(p, sizeof p, "state.rec");
  if (access(p, F_OK) == 0) return;
  img = malloc(g.factory_size);
  n = snprintf(head, sizeof head, "FWSAMPLE1 {\"name\":\"sensor-fw\",\"version\":\"%s\",\"hw\":\"%s\",\"selftest\":\"pass\"}\n", g.version, g.hw);
  for (i = 0; i < g.factory_size; i++) { x ^= x << 13; x ^= x >> 17; x ^= x << 5; img[i] = (uint8_t)x; }
  memcpy(img, head, (size_t)n);
  if (p_erase(0, 0) || p_write(0, 0, 0, img, g.factory_size) || p_flush(0, 0)) die(1, "cannot write the factory image in %s", g.dir);
  free(img);
}

static uint32_t num(const char *flag, const char *v, uint32_t min, uint32_t max) {
  char *end;
  unsigned long n = strtoul(v, &end, 10);
  if (!*v || *end || n < min || n > max) die(2, "%s: must be an integer %u..%u, got \"%s\"", flag, min, max, v);
  return (uint32_t)n;
}

static void usage(void) {
  fprintf(stderr,
    "usage: fwdevice --broker mqtt[s]://HOST:PORT --id ID --dir DIR [options]\n"
    "  --hw MODEL (sensor-v1)  --version V (factory version, 1.0.0)  --security-floor V\n"
    "  --password P | --credentials FILE (JSON id -> password)  --ca FILE (mqtts)\n"
    "  --pinned-key FILE (repeatable; PEM, base64 or hex)  --max-chunk N (4096)  --window N (8)\n"
    "  --trial-timeout MS (30000)  --boot-delay MS (300)  --factory-size BYTES (65536)\n"
    "  faults: --busy (SIGUSR1 toggles it)  --corrupt-chunk N  --fail-self-test\n");
}

static void parse(int argc, char **argv) {
  int i;
  const char *broker = NULL, *creds = NULL;
  g.hw = "sensor-v1";
  g.version = "1.0.0";
  g.boot_delay_ms = 300;
  g.factory_size = 65536;
  g.cfg.max_chunk = FWD_MAX_CHUNK;
  g.cfg.window = FWD_WINDOW;
  g.cfg.trial_timeout_ms = FWD_TRIAL_TIMEOUT_MS;
  for (i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (strcmp(a, name) == 0 && (v ? (i++, 1) : (die(2, "%s needs a value", name), 0)))
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) { usage(); exit(0); }
    else if (ARG("--broker")) broker = v;
    else if (ARG("--id")) g.id = v;
    else if (ARG("--dir")) g.dir = v;
    else if (ARG("--hw")) g.hw = v;
    else if (ARG("--version")) g.version = v;
    else if (ARG("--security-floor")) g.floor = v;
    else if (ARG("--password")) g.password = v;
    else if (ARG("--credentials")) creds = v;
    else if (ARG("--ca")) g.ca = v;
    else if (ARG("--pinned-key")) {
      if (g.cfg.pinned_count >= FWD_MAX_PINNED_KEYS) die(2, "--pinned-key: at most %u keys", FWD_MAX_PINNED_KEYS);
      if (load_key(v, g.cfg.pinned[g.cfg.pinned_count])) die(2, "--pinned-key: %s is not an Ed25519 public key (SPKI PEM, base64 or hex of 32 bytes)", v);
      g.cfg.pinned_count++;
    }
    else if (ARG("--max-chunk")) g.cfg.max_chunk = num(a, v, 64, FWD_MAX_CHUNK);
    else if (ARG("--window")) g.cfg.window = num(a, v, 1, 256);
    else if (ARG("--trial-timeout")) g.cfg.trial_timeout_ms = num(a, v, 1, 86400000);
    else if (ARG("--boot-delay")) g.boot_delay_ms = num(a, v, 0, 600000);
    else if (ARG("--factory-size")) g.factory_size = num(a, v, 1024, SLOT_CAPACITY);
    else if (ARG("--corrupt-chunk")) g.corrupt_chunk = num(a, v, 1, 0xffffffffu);
    else if (strcmp(a, "--busy") == 0) g.busy = 1;
    else if (strcmp(a, "--fail-self-test") == 0) g.fail_self_test = 1;
    else if (strcmp(a, "--json") == 0) { /* the console is always JSON lines */ }
    else { usage(); die(2, "unknown option %s", a); }
  }
  if (!broker || !g.id || !g.dir) { usage(); die(2, "--broker, --id and --dir are required"); }
  {
    /* DEVICE_ID_PATTERN ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$ (section 1.8) */
    size_t k, n = strlen(g.id);
    int ok = n >= 1 && n <= 64;
    for (k = 0; ok && k < n; k++) {
      char c = g.id[k];
      int alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
      ok = alnum || (k > 0 && (c == '_' || c == '.' || c == '-'));
    }
    if (!ok) die(2, "--id: \"%s\" is not a device id (letters, digits, \".\", \"_\", \"-\"; at most 64)", g.id);
  }
  if (!fwd_version_valid_str(g.version)) die(2, "--version: \"%s\" is not a semantic version such as 1.0.0", g.version);
  if (g.floor && !fwd_version_valid_str(g.floor)) die(2, "--security-floor: \"%s\" is not a semantic version", g.floor);
  if (strncmp(broker, "mqtts://", 8) == 0) { g.tls = 1; broker += 8; }
  else if (strncmp(broker, "mqtt://", 7) == 0) broker += 7;
  else if (strncmp(broker, "tcp://", 6) == 0) broker += 6;
  else die(2, "--broker: \"%s\" is not mqtt://HOST:PORT or mqtts://HOST:PORT", broker);
  {
    const char *colon = strrchr(broker, ':');
    size_t hl = colon ? (size_t)(colon - broker) : strlen(broker);
    if (hl == 0 || hl >= sizeof g.host) die(2, "--broker: no host");
    memcpy(g.host, broker, hl);
    g.host[hl] = 0;
    g.port = colon ? (int)num("--broker port", colon + 1, 1, 65535) : (g.tls ? 8883 : 1883);
  }
  if (creds && !g.password) g.password = credential(creds, g.id);
  if (getenv("FWDEVICE_CORRUPT_DONE")) g.corrupt_chunk = 0; /* a one-shot fault does not re-arm at a reboot */
}

static void on_signal(int s) { got_signal = s; }
/* SIGUSR1 toggles the busy switch at run time (the device then publishes status, section 6.3.1). */
static void on_usr1(int s) { (void)s; toggle_busy = 1; }

static void do_reboot(void) {
  uint32_t start = p_now(0);
  /* wait for the PUBACK of `activated` (section 6.8.1 step 2), bounded */
  while (g.ack_mid && !g.acked && g.connected && p_now(0) - start < 2000) mosquitto_loop(g.mosq, 50, 1);
  mosquitto_disconnect(g.mosq);
  mosquitto_loop(g.mosq, 50, 1);
  mosquitto_destroy(g.mosq);
  mosquitto_lib_cleanup();
  if (g.fds[0] >= 0) close(g.fds[0]);
  if (g.fds[1] >= 0) close(g.fds[1]);
  sleep_ms(g.boot_delay_ms);
  fflush(stdout);
  execv("/proc/self/exe", g.argv);
  die(1, "re-exec failed: %s", strerror(errno));
}

/* `fwdevice show --dir DIR`: the durable state record as one JSON line (for tests and the demo). */
static int show(int argc, char **argv) {
  fwd_state_rec rec;
  int i;
  for (i = 2; i + 1 < argc; i++) if (strcmp(argv[i], "--dir") == 0) g.dir = argv[i + 1];
  if (!g.dir) die(2, "show: --dir is required");
  if (p_kv_read(0, FWD_KV_STATE, &rec, sizeof rec) != (int)sizeof rec || rec.magic != 0x46574431u ||
      rec.crc != fwd_crc32(0, (const uint8_t *)&rec, offsetof(fwd_state_rec, crc))) {
    printf("null\n");
    return 1;
  }
  printf("{\"active\":\"%c\",\"trial\":%s,\"seq\":%u,\"slots\":{", rec.active ? 'b' : 'a', rec.trial ? "true" : "false", rec.max_seq);
  for (i = 0; i < 2; i++) {
    char hex[65];
    fwd_hex_encode(rec.slots[i].sha256, 32, hex);
    printf("%s\"%c\":{\"state\":\"%s\",\"version\":\"%s\",\"sha256\":\"%s\",\"size\":%u}", i ? "," : "", 'a' + i,
           fwd_slot_state_name(rec.slots[i].state), rec.slots[i].version, hex, rec.slots[i].size);
  }
  printf("}}\n");
  return 0;
}

int main(int argc, char **argv) {
  uint32_t delay = 1000;
  g.argv = argv;
  if (argc > 1 && strcmp(argv[1], "show") == 0) return show(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  signal(SIGUSR1, on_usr1);
  parse(argc, argv);
  if (sodium_init() < 0) die(1, "libsodium failed to start");
  {
    char p[PATH_MAX], *q;
    snprintf(p, sizeof p, "%s", g.dir);
    for (q = p + 1; *q; q++) if (*q == '/') { *q = 0; mkdir(p, 0755); *q = '/'; }
    if (mkdir(p, 0755) != 0 && errno != EEXIST) die(1, "cannot create %s: %s", g.dir, strerror(errno));
  }
  snprintf(g.down, sizeof g.down, "fwgate/v1/dev/%s/down", g.id);
  snprintf(g.up, sizeof g.up, "fwgate/v1/dev/%s/up", g.id);
  provision_factory();
  g.cfg.hw = g.hw;
  g.cfg.floor = g.floor;
  g.cfg.factory_name = "sensor-fw";
  g.cfg.factory_version = g.version;
  g.cfg.factory_size = g.factory_size;
  if (fwd_init(&g.dev, &port, &g.cfg) != 0) die(1, "no bootable slot in %s", g.dir);
  g.dev.busy = (uint8_t)g.busy;

  mosquitto_lib_init();
  g.mosq = mosquitto_new(g.id, true, NULL);
  if (!g.mosq) die(1, "mosquitto_new failed");
  mosquitto_int_option(g.mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
  mosquitto_int_option(g.mosq, MOSQ_OPT_TCP_NODELAY, 1);
  mosquitto_connect_callback_set(g.mosq, on_connect);
  mosquitto_subscribe_callback_set(g.mosq, on_subscribe);
  mosquitto_disconnect_callback_set(g.mosq, on_disconnect);
  mosquitto_publish_callback_set(g.mosq, on_publish);
  mosquitto_message_callback_set(g.mosq, on_message);
  if (g.password && mosquitto_username_pw_set(g.mosq, g.id, g.password) != MOSQ_ERR_SUCCESS) die(1, "mosquitto_username_pw_set failed");
  if (g.tls) {
    if (!g.ca) die(2, "mqtts needs --ca");
    if (mosquitto_tls_set(g.mosq, g.ca, NULL, NULL, NULL, NULL) != MOSQ_ERR_SUCCESS) die(2, "--ca: cannot use %s", g.ca);
  }
  while (!got_signal) {
    int rc = mosquitto_connect(g.mosq, g.host, g.port, 10);
    if (rc == MOSQ_ERR_SUCCESS) {
      while (!got_signal && !g.reboot_pending) {
        rc = mosquitto_loop(g.mosq, 100, FWD_FLUSH_BATCH);
        fwd_idle(&g.dev); /* nothing more waiting: make the batch durable and ack it */
        if (toggle_busy) {
          toggle_busy = 0;
          g.busy = !g.busy;
          fwd_set_busy(&g.dev, g.busy);
          console("busy", g.busy ? "\"busy\":true" : "\"busy\":false");
        }
        fwd_tick(&g.dev);
        if (g.connected) delay = 1000;
        if (rc != MOSQ_ERR_SUCCESS) break;
      }
      if (g.reboot_pending) {
        console("rebooting", "");
        do_reboot();
      }
      on_disconnect(g.mosq, NULL, rc);
    }
    if (got_signal) break;
    /* bounded exponential backoff, 1 s doubling to 10 s (section 6.1.2); the trial timer runs on */
    {
      uint32_t until = p_now(0) + delay;
      while (!got_signal && (int32_t)(until - p_now(0)) > 0) {
        sleep_ms(50);
        fwd_tick(&g.dev);
        if (g.reboot_pending) do_reboot();
      }
    }
    delay = delay * 2 > 10000 ? 10000 : delay * 2;
    mosquitto_disconnect(g.mosq);
  }
  g.stopping = 1;
  mosquitto_disconnect(g.mosq);
  mosquitto_loop(g.mosq, 50, 1);
  mosquitto_destroy(g.mosq);
  mosquitto_lib_cleanup();
  console("stopped", "");
  return 0;
}

/*
 * The footprint build's only non-core code (scripts/footprint.ts): a port whose functions do
 * nothing, and an entry point that reaches every public core function, so that the linker keeps
 * all of the core and nothing else. Its own bytes are counted apart from the core's.
 */
#include "fwd_device.h"

static int pub(void *c, const uint8_t *b, size_t n, int q, int w) { (void)c; (void)b; (void)n; (void)q; (void)w; return 0; }
static uint32_t now(void *c) { (void)c; return 0; }
static uint32_t cap(void *c, int s) { (void)c; (void)s; return 1u << 20; }
static int erase(void *c, int s) { (void)c; (void)s; return 0; }
static int wr(void *c, int s, uint32_t o, const uint8_t *d, size_t n) { (void)c; (void)s; (void)o; (void)d; (void)n; return 0; }
static int rd(void *c, int s, uint32_t o, uint8_t *d, size_t n) { (void)c; (void)s; (void)o; (void)d; (void)n; return 0; }
static int fl(void *c, int s) { (void)c; (void)s; return 0; }
static int kvr(void *c, int k, void *b, size_t n) { (void)c; (void)k; (void)b; (void)n; return -1; }
static int kvw(void *c, int k, const void *b, size_t n) { (void)c; (void)k; (void)b; (void)n; return 0; }
static void rb(void *c, const char *w) { (void)c; (void)w; }
static void si(void *c, void *s) { (void)c; (void)s; }
static void su(void *c, void *s, const uint8_t *p, size_t n) { (void)c; (void)s; (void)p; (void)n; }
static void sf(void *c, void *s, uint8_t o[32]) { (void)c; (void)s; (void)o; }
static int ev(void *c, const uint8_t s[64], const uint8_t *m, size_t n, const uint8_t k[32]) { (void)c; (void)s; (void)m; (void)n; (void)k; return 0; }

static const fwd_port port = { 0, pub, now, cap, erase, wr, rd, fl, kvr, kvw, rb, si, su, sf, ev, 0, 0 };
static fwd_device device;
static fwd_config config;
static uint8_t rx[64];

void footprint_main(void);
void footprint_main(void) {
  fwd_init(&device, &port, &config);
  fwd_connected(&device);
  fwd_receive(&device, rx, sizeof rx);
  fwd_idle(&device);
  fwd_tick(&device);
  fwd_set_busy(&device, 1);
  for (;;) {}
}

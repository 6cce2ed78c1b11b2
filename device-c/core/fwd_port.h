/*
 * fwd_port.h - everything the core needs from the board, as one struct of function pointers
 * (docs/device-guide.md "The port"). The core calls nothing else: no OS, no libc allocation,
 * no network or file API. Every function returns 0 on success unless it says otherwise.
 */
#ifndef FWD_PORT_H
#define FWD_PORT_H
#include <stddef.h>
#include <stdint.h>

enum { FWD_SLOT_A = 0, FWD_SLOT_B = 1 };

/* The durable records the core keeps (section 6.6.4, 6.9.2). */
enum { FWD_KV_STATE = 0, FWD_KV_TRANSFER = 1 };

typedef struct fwd_port {
  void *ctx;

  /* MQTT (section 6.1): publish `len` bytes on fwgate/v1/dev/{id}/up with `qos` 0 or 1. With
   * `wait_ack` set (only for `activated`, section 6.8.1) return after the broker's PUBACK or a
   * bounded time (2000 ms). The core subscribes nothing itself: the port subscribes the down
   * topic at QoS 1 and waits for the SUBACK before it calls fwd_connected(). */
  int (*publish)(void *ctx, const uint8_t *buf, size_t len, int qos, int wait_ack);

  /* Monotonic milliseconds (wraps at 2^32; the core compares differences). */
  uint32_t (*now_ms)(void *ctx);

  /* Flash slots. erase: the whole slot reads as empty afterwards. write: may be buffered.
   * flush: every byte written before it survives a power cut once it returns. */
  uint32_t (*slot_capacity)(void *ctx, int slot);
  int (*slot_erase)(void *ctx, int slot);
  int (*slot_write)(void *ctx, int slot, uint32_t off, const uint8_t *data, size_t len);
  int (*slot_read)(void *ctx, int slot, uint32_t off, uint8_t *data, size_t len);
  int (*slot_flush)(void *ctx, int slot);

  /* Persistent records: kv_read returns the bytes read (< 0: absent or unreadable); kv_write
   * replaces the record atomically and durably (a power cut leaves the old or the new record). */
  int (*kv_read)(void *ctx, int key, void *buf, size_t len);
  int (*kv_write)(void *ctx, int key, const void *buf, size_t len);

  /* Restart the device; does not return on a board (the POSIX port re-executes itself). */
  void (*reboot)(void *ctx, const char *why);

  /* SHA-256 in pieces over `state` (FWD_SHA256_STATE bytes, aligned for any type). */
  void (*sha256_init)(void *ctx, void *state);
  void (*sha256_update)(void *ctx, void *state, const uint8_t *p, size_t n);
  void (*sha256_final)(void *ctx, void *state, uint8_t out[32]);

  /* Ed25519 (RFC 8032, pure) verify of `sig` over msg with the raw public key: 0 when valid. */
  int (*ed25519_verify)(void *ctx, const uint8_t sig[64], const uint8_t *msg, size_t len, const uint8_t pk[32]);

  /* Optional (may be NULL = passes): the self-test of the image in `slot`, run once at its trial
   * boot (section 6.9.2 rule 2). 0 = passed. */
  int (*self_test)(void *ctx, int slot);

  /* Optional (may be NULL): one event for the console, e.g. "confirmed"; `json` is the rest of a
   * JSON object ("" or "\"sid\":5,..."), for logs and the HIL timelines. */
  void (*event)(void *ctx, const char *type, const char *json);
} fwd_port;

#endif

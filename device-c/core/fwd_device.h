/*
 * fwd_device.h - the device side of docs/protocol.md section 6, over a port (fwd_port.h).
 * No allocation, no OS: one fwd_device struct holds everything (its size is the core's RAM).
 *
 * The port drives it:
 *   fwd_init()       at power-on: loads the durable record and runs the boot rules (6.9.2)
 *   fwd_connected()  after each CONNACK + SUBACK of the down topic: boot report (once per boot), status (6.2)
 *   fwd_receive()    for every message on fwgate/v1/dev/{id}/down
 *   fwd_idle()       when no further message is waiting: flushes the chunk batch and acks it (6.6.4)
 *   fwd_tick()       now and then (every 100 ms or so): the trial timeout (6.9.3)
 */
#ifndef FWD_DEVICE_H
#define FWD_DEVICE_H
#include <stddef.h>
#include <stdint.h>
#include "fwd_config.h"
#include "fwd_msg.h"
#include "fwd_port.h"

/* Slot states (section 6.3, SlotStates). */
typedef enum { FWD_EMPTY, FWD_RECEIVING, FWD_READY, FWD_PENDING, FWD_TRIAL, FWD_CONFIRMED, FWD_BAD } fwd_slot_state;

/* One slot in the durable record. */
typedef struct {
  uint8_t state;
  uint8_t has_sid;            /* ready under `sid` (section 6.7.1) */
  uint8_t pad[2];
  uint32_t sid, size, crc32, seq;
  uint8_t sha256[32];
  char name[FWD_MAX_NAME + 1];
  char version[FWD_MAX_NAME + 1];
} fwd_slot_rec;

/* The device-wide record (FWD_KV_STATE): slot states, active slot, trial flag, anti-rollback seq. */
typedef struct {
  uint32_t magic;
  fwd_slot_rec slots[2];
  uint8_t active, trial, pad[2];
  uint32_t max_seq;           /* highest seq confirmed (section 6.5.7) */
  uint32_t crc;               /* CRC-32 of everything before it: a record read back is checked */
} fwd_state_rec;

/* Signature check of the offer a transfer follows (section 5.4.3), made when it is accepted. */
enum { FWD_SIG_OK = 0, FWD_SIG_UNSIGNED, FWD_SIG_UNKNOWN_KEY, FWD_SIG_BAD, FWD_SIG_UNCHECKED };

/* The transfer record (FWD_KV_TRANSFER): which chunks of the inactive slot are durably held. */
typedef struct {
  uint32_t magic;
  uint32_t size, crc32, chunk, seq;
  uint8_t sha256[32];
  uint8_t slot, sig, pad[2];
  uint8_t held[(FWD_MAX_CHUNKS + 7) / 8];
  uint32_t crc;
} fwd_xfer_rec;

typedef struct {
  const char *hw;                 /* status.hw */
  const char *floor;              /* anti-rollback security floor (section 6.5.6), NULL = none */
  const char *factory_name;       /* a blank device: the image the port provisioned in slot a */
  const char *factory_version;
  uint32_t factory_size;
  uint32_t max_chunk;             /* <= FWD_MAX_CHUNK */
  uint32_t window;                /* accept.window */
  uint32_t trial_timeout_ms;
  uint8_t pinned[FWD_MAX_PINNED_KEYS][32]; /* raw Ed25519 public keys */
  uint32_t pinned_count;          /* 0: no signature check (development, section 5.4.5) */
} fwd_config;

typedef struct fwd_device {
  const fwd_port *port;
  fwd_config cfg;
  uint8_t key_ids[FWD_MAX_PINNED_KEYS][8];
  fwd_state_rec rec;

  /* this boot (section 6.9) */
  uint8_t boot_slot, boot_trial, boot_reverted, boot_sent, busy, fatal;
  char boot_reason[64];
  uint32_t boot_ms;

  /* the transfer into the inactive slot (section 6.5, 6.6) */
  fwd_xfer_rec xfer;
  uint8_t xfer_on, xfer_has_sid, xfer_erased;
  uint32_t xfer_sid;
  fwd_slot_rec prev;              /* the slot before the offer: abort restores it if nothing was written */
  uint32_t count, first, highest_plus1; /* chunks, first not held, highest held + 1 */
  /* the batch (section 6.6.4): written but not yet durable, and the acks owed */
  uint16_t unflushed[FWD_FLUSH_BATCH];
  uint8_t n_unflushed, owed;
  uint32_t owed_sid;
  uint32_t bad[FWD_WINDOW];       /* chunk indexes answered bad in this batch */
  uint8_t n_bad;

  uint8_t tasks;                  /* entries of the last `tasks` (section 6.14.2: RAM only) */

  /* counters (section 1.5) */
  uint32_t invalid, unknown_type, ignored, chunks, bad_chunks, duplicates;

  uint8_t tx[FWD_TX_BUFFER];
  uint8_t sha_state[FWD_SHA256_STATE] __attribute__((aligned(8)));
  uint8_t block[FWD_READ_BLOCK];
} fwd_device;

/* 0 on success; < 0 when no slot can boot (section 6.9.2 rule 4) or the port failed. */
int fwd_init(fwd_device *d, const fwd_port *port, const fwd_config *cfg);
void fwd_connected(fwd_device *d);
void fwd_receive(fwd_device *d, const uint8_t *buf, size_t len);
void fwd_idle(fwd_device *d);
void fwd_tick(fwd_device *d);
void fwd_set_busy(fwd_device *d, int busy);

const char *fwd_slot_state_name(int s);
/* The running image as the boot chose it. */
const fwd_slot_rec *fwd_running(const fwd_device *d);

#endif

/*
 * fwd_boot.c - durable records and the boot rules of docs/protocol.md section 6.9.2 (what a
 * bootloader does; on a board with MCUboot or ESP-IDF this maps onto their calls, see
 * docs/device-guide.md).
 */
#include "fwd_internal.h"
#include "fwd_util.h"
#include <string.h>

static uint32_t rec_crc(const void *p, size_t n) { return fwd_crc32(0, (const uint8_t *)p, n); }

int fwd_save_state(fwd_device *d) {
  d->rec.magic = FWD_STATE_MAGIC;
  d->rec.crc = rec_crc(&d->rec, offsetof(fwd_state_rec, crc));
  return d->port->kv_write(d->port->ctx, FWD_KV_STATE, &d->rec, sizeof d->rec);
}

int fwd_save_xfer(fwd_device *d) {
  d->xfer.magic = FWD_XFER_MAGIC;
  d->xfer.crc = rec_crc(&d->xfer, offsetof(fwd_xfer_rec, crc));
  return d->port->kv_write(d->port->ctx, FWD_KV_TRANSFER, &d->xfer, sizeof d->xfer);
}

void fwd_drop_xfer(fwd_device *d) {
  d->xfer_on = 0;
  d->xfer_has_sid = 0;
  d->n_unflushed = 0;
  memset(&d->xfer, 0, sizeof d->xfer);
  (void)fwd_save_xfer(d); /* an empty record (size 0) holds nothing */
}

void fwd_sha256(fwd_device *d, const uint8_t *p, size_t n, uint8_t out[32]) {
  d->port->sha256_init(d->port->ctx, d->sha_state);
  d->port->sha256_update(d->port->ctx, d->sha_state, p, n);
  d->port->sha256_final(d->port->ctx, d->sha_state, out);
}

int fwd_check_slot(fwd_device *d, int slot, uint32_t size, const uint32_t *crc, const uint8_t sha[32]) {
  const fwd_port *pt = d->port;
  uint32_t off = 0, c = 0;
  uint8_t digest[32];
  if (size == 0 || size > pt->slot_capacity(pt->ctx, slot)) return 1;
  pt->sha256_init(pt->ctx, d->sha_state);
  while (off < size) {
    size_t n = size - off < FWD_READ_BLOCK ? size - off : FWD_READ_BLOCK;
    if (pt->slot_read(pt->ctx, slot, off, d->block, n)) return 4;
    c = fwd_crc32(c, d->block, n);
    pt->sha256_update(pt->ctx, d->sha_state, d->block, n);
    off += (uint32_t)n;
  }
  pt->sha256_final(pt->ctx, d->sha_state, digest);
  if (crc && c != *crc) return 2;
  return memcmp(digest, sha, 32) ? 3 : 0;
}

static int load_state(fwd_device *d) {
  int n = d->port->kv_read(d->port->ctx, FWD_KV_STATE, &d->rec, sizeof d->rec);
  if (n != (int)sizeof d->rec || d->rec.magic != FWD_STATE_MAGIC || d->rec.crc != rec_crc(&d->rec, offsetof(fwd_state_rec, crc))) return -1;
  if (d->rec.active > 1) return -1;
  return 0;
}

/* A blank device: the factory image the port provisioned in slot a, confirmed; slot b empty. */
static int factory(fwd_device *d) {
  fwd_slot_rec *a = &d->rec.slots[0];
  uint32_t off = 0;
  memset(&d->rec, 0, sizeof d->rec);
  a->state = FWD_CONFIRMED;
  a->size = d->cfg.factory_size;
  strncpy(a->name, d->cfg.factory_name, FWD_MAX_NAME);
  strncpy(a->version, d->cfg.factory_version, FWD_MAX_NAME);
  d->port->sha256_init(d->port->ctx, d->sha_state);
  while (off < a->size) {
    size_t n = a->size - off < FWD_READ_BLOCK ? a->size - off : FWD_READ_BLOCK;
    if (d->port->slot_read(d->port->ctx, 0, off, d->block, n)) return -1;
    a->crc32 = fwd_crc32(a->crc32, d->block, n);
    d->port->sha256_update(d->port->ctx, d->sha_state, d->block, n);
    off += (uint32_t)n;
  }
  d->port->sha256_final(d->port->ctx, d->sha_state, a->sha256);
  d->rec.slots[1].state = FWD_EMPTY;
  return fwd_save_state(d);
}

static void set_reason(fwd_device *d, const char *a, const char *b) {
  size_t n = strlen(a);
  memcpy(d->boot_reason, a, n);
  strncpy(d->boot_reason + n, b, sizeof d->boot_reason - n - 1);
  d->boot_reason[sizeof d->boot_reason - 1] = 0;
}

static const char *const check_names[] = { "", "size", "crc32", "sha256", "flash read" };

/* Rule 3 for `slot` (also the fallback of rules 1 and 2): confirmed and its image checks out. */
static int bootable(fwd_device *d, int slot) {
  fwd_slot_rec *s = &d->rec.slots[slot];
  int r;
  if (s->state != FWD_CONFIRMED) return 0;
  r = fwd_check_slot(d, slot, s->size, 0, s->sha256);
  if (r == 0) return 1;
  s->state = FWD_BAD;
  set_reason(d, "image check failed: ", check_names[r]);
  d->boot_reverted = 1;
  return 0;
}

int fwd_boot(fwd_device *d) {
  fwd_state_rec *rec = &d->rec;
  int a, other, i, changed = 0;
  if (load_state(d) != 0 && factory(d) != 0) return -1;
  a = rec->active;
  other = 1 - a;
  d->boot_trial = d->boot_reverted = 0;
  d->boot_reason[0] = 0;
  if (rec->trial || rec->slots[a].state == FWD_TRIAL) {
    /* 1. An unconfirmed trial: the reset ended its one run. Revert. */
    rec->slots[a].state = FWD_BAD;
    rec->trial = 0;
    rec->active = (uint8_t)other;
    d->boot_reverted = 1;
    set_reason(d, "trial image not confirmed before reset", ""); /* never "self-test" (section 6.9.4) */
    changed = 1;
  } else {
    for (i = 0; i < 2; i++) {
      if (rec->slots[i].state != FWD_PENDING) continue;
      /* 2. Pending: one trial boot, recorded durably before the image runs. */
      rec->slots[i].state = FWD_TRIAL;
      rec->active = (uint8_t)i;
      rec->trial = 1;
      if (fwd_save_state(d)) return -1;
      {
        int r = fwd_check_slot(d, i, rec->slots[i].size, 0, rec->slots[i].sha256);
        int st = r == 0 && d->port->self_test ? d->port->self_test(d->port->ctx, i) : 0;
        if (r != 0 || st != 0) {
          rec->slots[i].state = FWD_BAD;
          rec->trial = 0;
          rec->active = (uint8_t)(1 - i);
          d->boot_reverted = 1;
          if (r != 0) set_reason(d, "image check failed: ", check_names[r]);
          else set_reason(d, "self-test failed", "");
          changed = 1;
        } else {
          d->boot_trial = 1;
        }
      }
      break;
    }
  }
  if (!d->boot_trial) {
    /* 3. Normal boot of the active slot; a failed check falls back to the other confirmed one,
     * which is checked the same way (section 6.9.2). */
    a = rec->active;
    if (!bootable(d, a)) {
      changed = 1;
      if (!bootable(d, 1 - a)) {
        (void)fwd_save_state(d);
        return -2; /* 4. nothing bootable */
      }
      rec->active = (uint8_t)(1 - a);
      if (!d->boot_reverted) d->boot_reverted = 1;
    }
  }
  if (changed && fwd_save_state(d)) return -1;
  d->boot_slot = rec->active;
  return 0;
}

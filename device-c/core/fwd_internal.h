/* fwd_internal.h - shared between the core's files; not for ports. */
#ifndef FWD_INTERNAL_H
#define FWD_INTERNAL_H
#include "fwd_device.h"

#define FWD_STATE_MAGIC 0x46574431u /* "FWD1" */
#define FWD_XFER_MAGIC 0x46575831u  /* "FWX1" */

int fwd_save_state(fwd_device *d);
int fwd_save_xfer(fwd_device *d);
void fwd_drop_xfer(fwd_device *d);
void fwd_event(fwd_device *d, const char *type, const char *json);
/* Size, then (when crc != NULL) CRC-32, then SHA-256 of `size` bytes of `slot`:
 * 0 ok, 1 size, 2 crc32, 3 sha256, 4 flash read failed. */
int fwd_check_slot(fwd_device *d, int slot, uint32_t size, const uint32_t *crc, const uint8_t sha[32]);
void fwd_sha256(fwd_device *d, const uint8_t *p, size_t n, uint8_t out[32]);
int fwd_boot(fwd_device *d);

/* A tiny JSON fragment builder for console events (no printf on an MCU). */
typedef struct {
  char *p;
  size_t cap, len;
} fwd_json;
void fwd_json_str(fwd_json *j, const char *key, const char *v, size_t n);
void fwd_json_uint(fwd_json *j, const char *key, uint32_t v);
void fwd_json_bool(fwd_json *j, const char *key, int v);
#endif

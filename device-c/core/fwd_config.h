/*
 * fwd_config.h - compile-time sizes of the fwgate device core (docs/device-guide.md "RAM and
 * window sizing"). Override any of them with -D on the compiler command line.
 */
#ifndef FWD_CONFIG_H
#define FWD_CONFIG_H

/* Largest chunk the device accepts (status.maxChunk, accept.chunk <= this), 64..65536. The
 * core never copies a chunk: it writes chunk.data straight from the port's receive buffer, so
 * this bounds the MQTT receive buffer of the port, not the core's RAM. */
#ifndef FWD_MAX_CHUNK
#define FWD_MAX_CHUNK 4096u
#endif

/* accept.window: chunks the gateway may have in flight (section 6.6.2). */
#ifndef FWD_WINDOW
#define FWD_WINDOW 8u
#endif

/* Chunks written before the core flushes the slot and acks the batch (section 6.6.4). */
#ifndef FWD_FLUSH_BATCH
#define FWD_FLUSH_BATCH 8u
#endif

/* Most chunks of one image (the held-chunk bitmap has FWD_MAX_CHUNKS bits). An offer that
 * would need more chunks at min(offer.chunk, FWD_MAX_CHUNK) is refused `no-space`. */
#ifndef FWD_MAX_CHUNKS
#define FWD_MAX_CHUNKS 2048u
#endif

/* Entries of ack.missing (protocol MAX_ACK_MISSING is 256; a device may send fewer). */
#ifndef FWD_MAX_MISSING
#define FWD_MAX_MISSING 256u
#endif

/* Outgoing message buffer: the largest of status, ack with FWD_MAX_MISSING entries, and the
 * signed bytes of a manifest (section 5.4.1) rebuilt from an offer. */
#ifndef FWD_TX_BUFFER
#define FWD_TX_BUFFER 1536u
#endif

/* Pinned Ed25519 keys (section 5.4.5). */
#ifndef FWD_MAX_PINNED_KEYS
#define FWD_MAX_PINNED_KEYS 2u
#endif

/* Opaque SHA-256 state the port's sha256_* functions use (libsodium needs 104 bytes). */
#ifndef FWD_SHA256_STATE
#define FWD_SHA256_STATE 128u
#endif

/* Scratch for reading a slot back at verify / boot (CRC-32 and SHA-256 over the image). */
#ifndef FWD_READ_BLOCK
#define FWD_READ_BLOCK 256u
#endif

/* Trial timeout (section 6.9.3), ms. */
#ifndef FWD_TRIAL_TIMEOUT_MS
#define FWD_TRIAL_TIMEOUT_MS 30000u
#endif

#if FWD_WINDOW > 32
#error "FWD_WINDOW: at most 32 (the bad chunks of one batch are tracked in a 32-bit mask)"
#endif
#if FWD_FLUSH_BATCH < 1 || FWD_MAX_CHUNKS > 65536
#error "FWD_FLUSH_BATCH >= 1 and FWD_MAX_CHUNKS <= 65536 (chunk indexes are 16-bit in the batch)"
#endif

#define FWD_MAX_NAME 64u           /* MAX_NAME_LENGTH */
#define FWD_MAX_HW_MODELS 16u      /* MAX_HW_MODELS */
#define FWD_MAX_TASKS 8u           /* MAX_TASKS */
#define FWD_MIN_CHUNK 64u
#define FWD_PROTOCOL_MAX_CHUNK 65536u

#endif

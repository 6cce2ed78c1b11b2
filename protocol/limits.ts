/**
 * Hard protocol bounds (docs/protocol.md §1.6). Decoders refuse anything outside them before
 * allocating. Tunable defaults live in gateway/config.ts; these are the outer walls.
 */
export const PROTOCOL_VERSION = 1;
/** Largest image any side accepts: sizes and offsets are CBOR unsigned integers below 2^32. */
export const MAX_IMAGE_SIZE = 0xffff_ffff;
export const MIN_CHUNK_SIZE = 64;
export const MAX_CHUNK_SIZE = 65_536;
/** Largest missing-offset list in one ack. */
export const MAX_ACK_MISSING = 256;
export const MAX_NAME_LENGTH = 64;
export const MAX_HW_MODELS = 16;
/** Most components in one release manifest and in one device's `status` (§5.5, §6.3.3). */
export const MAX_COMPONENTS = 8;
export const MAX_TEXT_LENGTH = 256;
export const MAX_DEVICE_ID_LENGTH = 64;
/** Largest serial frame payload (before COBS) either side may negotiate. */
export const MAX_FRAME_PAYLOAD = 16_384;
export const MIN_FRAME_PAYLOAD = 64;
export const MAX_WINDOW = 64;
/** Most device entries (targeted + excluded) in one `order` message; keeps it under MAX_UPLINK_MESSAGE. */
export const MAX_ORDER_ENTRIES = 10_000;
/** Largest reassembled uplink message. */
export const MAX_UPLINK_MESSAGE = 1_048_576;
/** Largest OTA MQTT payload: a chunk of MAX_CHUNK_SIZE plus its envelope. */
export const MAX_OTA_MESSAGE = MAX_CHUNK_SIZE + 1024;
/** Device ids: what may appear as an MQTT topic level and a file name. */
export const DEVICE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

import { DEVICE_ID_PATTERN } from './limits.ts';

/**
 * MQTT topic layout (docs/protocol.md §6.1). All OTA traffic for one device is on two topics:
 *   fwgate/v1/dev/{id}/up    device -> gateway (status, boot, pong, accept, reject, ack, ...)
 *   fwgate/v1/dev/{id}/down  gateway -> device (ping, offer, chunk, verify, activate, ...)
 * The MQTT client id of a device is its device id.
 */
export const TOPIC_ROOT = 'fwgate/v1/dev';

export const topics = {
  up: (deviceId: string): string => `${TOPIC_ROOT}/${deviceId}/up`,
  down: (deviceId: string): string => `${TOPIC_ROOT}/${deviceId}/down`,
  /** Wildcard the gateway subscribes to. */
  allUp: `${TOPIC_ROOT}/+/up`,
} as const;

export type TopicKind = 'up' | 'down';

/** Parse a device topic; null when it is not one of ours or the id is not a valid device id. */
export function parseDeviceTopic(topic: string): { deviceId: string; kind: TopicKind } | null {
  const parts = topic.split('/');
  if (parts.length !== 5 || `${parts[0]}/${parts[1]}/${parts[2]}` !== TOPIC_ROOT) return null;
  const deviceId = parts[3]!;
  const kind = parts[4];
  if (!isValidDeviceId(deviceId) || (kind !== 'up' && kind !== 'down')) return null;
  return { deviceId, kind };
}

export function isValidDeviceId(id: string): boolean {
  return DEVICE_ID_PATTERN.test(id);
}

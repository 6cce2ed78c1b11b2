import { parseDeviceTopic } from '../protocol/topics.ts';

/**
 * Whose message a publish on the broker is, for the gateway (docs/protocol.md §6.1.3): the device
 * id of an `up` topic, when the publisher is that device (or the gateway itself, in-process:
 * `clientId` null); undefined when it must be dropped — not an `up` topic, or another client's
 * publish on a device's `up` topic. The second layer behind the broker's topic rules.
 */
export function upTopicSender(topic: string, clientId: string | null): string | undefined {
  const parsed = parseDeviceTopic(topic);
  if (!parsed || parsed.kind !== 'up') return undefined;
  if (clientId !== null && clientId !== parsed.deviceId) return undefined;
  return parsed.deviceId;
}

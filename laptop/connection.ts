import type { SerialPort } from 'serialport';
import { FwError } from '../protocol/errors.ts';
import {
  decodeGatewayUplinkMessage, encodeUplinkMessage, type GatewayUplinkMessage, type HelloMessage, type LaptopMessage,
} from '../protocol/uplink.ts';
import { MessageLink } from '../transport/message-link.ts';
import { closeSerialPortWithin, openSerialPort, watchPortPath } from '../transport/serial-port.ts';
import { UplinkClient, type ClientOptions } from './client.ts';
import { laptopSettings } from './settings.ts';

export interface ConnectionOptions {
  path: string;
  baudRate: number;
  client: ClientOptions;
  /** Called with each new client before its hello, to subscribe to its events. */
  attach(client: UplinkClient): void;
  /** Called once when the gateway has not answered `waitingHintMs` after the port opened, with the time left. */
  onWaiting?(remainingMs: number): void;
}

/** One session with the gateway: an open port, its link, a client that has exchanged hellos. */
export interface Connection {
  readonly client: UplinkClient;
  readonly hello: HelloMessage;
  /** Why the link was lost (port closed or failed, peer stopped answering), or undefined while it holds. */
  readonly lost: FwError | undefined;
  close(): Promise<void>;
}

/** Close a port, bounded: a port that hangs in close is left to the OS. */
export async function closePortWithin(port: SerialPort, timeoutMs = laptopSettings.portCloseTimeoutMs): Promise<void> {
  await closeSerialPortWithin(port, timeoutMs);
}

/**
 * Reset the link on the way out (docs/protocol.md §7.2.4, §7.10.1): the gateway ends the session,
 * and with it the technician's authorisation, at once instead of when the link goes dead. Bounded
 * by laptopSettings.farewellTimeoutMs; a port that is already gone is not waited for.
 */
export async function farewell(link: MessageLink<GatewayUplinkMessage, LaptopMessage>, timeoutMs = laptopSettings.farewellTimeoutMs): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([link.open(), new Promise<void>((resolve) => { timer = setTimeout(resolve, timeoutMs); })]);
  } catch {
    // the port or link is gone: nothing to reset
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Open the port, reset the link and exchange hellos, all within `timeoutMs`; on any failure
 * everything opened is closed again before the error is thrown.
 */
export async function openConnection(o: ConnectionOptions, timeoutMs: number): Promise<Connection> {
  const port = await openSerialPort(o.path, o.baudRate);
  let lost: FwError | undefined;
  let closing = false;
  // Registered before the link's own listeners, so the port's reason is the one kept.
  port.on('close', (err?: Error | null) => {
    if (!closing) lost ??= new FwError('E_LINK_CLOSED', `serial port ${o.path} ${err ? `failed: ${err.message}` : 'closed'}`, { cause: err ?? undefined });
  });
  port.on('error', (err: Error) => {
    if (!closing) lost ??= new FwError('E_LINK_CLOSED', `serial port ${o.path} failed: ${err.message}`, { cause: err });
  });
  const link = new MessageLink<GatewayUplinkMessage, LaptopMessage>(port, {
    decode: decodeGatewayUplinkMessage,
    encode: encodeUplinkMessage,
    arq: { window: o.client.window, maxPayload: laptopSettings.initialFramePayload },
    sendTimeoutMs: laptopSettings.sendTimeoutMs,
  });
  link.on('down', (err) => {
    if (!closing) lost ??= err;
  });
  // §4.11.2: a RESET from the gateway after the hellos: it restarted and this session is gone
  let helloDone = false;
  link.on('reset', () => {
    if (!closing && helloDone) lost ??= new FwError('E_LINK_RESET', 'the gateway reset the link (it restarted)');
  });
  link.on('closed', () => {
    if (!closing) lost ??= new FwError('E_LINK_CLOSED', `serial port ${o.path} closed`);
  });
  let closed: Promise<void> | undefined;
  let unwatch: () => void = () => undefined;
  const close = (): Promise<void> => {
    closing = true;
    unwatch();
    return (closed ??= farewell(link).then(() => {
      link.close();
      return closePortWithin(port);
    }));
  };
  // A tty that vanishes (cable or adapter pulled) is not always reported by the port: a read of a
  // hung-up tty can return 0 bytes, which the serialport binding retries forever. So the path is
  // watched too; gone, or another device in its place, is a lost link.
  unwatch = await watchPortPath(o.path, laptopSettings.portCheckIntervalMs, (why) => {
    if (closing) return;
    lost ??= new FwError('E_LINK_CLOSED', `serial port ${o.path} ${why === 'disappeared' ? 'disappeared' : 'was replaced by another device'}`);
    void close();
  });
  const client = new UplinkClient(link, o.client);
  o.attach(client);
  let timer: NodeJS.Timeout | undefined;
  const waiting = o.onWaiting && laptopSettings.waitingHintMs < timeoutMs
    ? setTimeout(() => o.onWaiting!(timeoutMs - laptopSettings.waitingHintMs), laptopSettings.waitingHintMs)
    : undefined;
  try {
    const hello = await Promise.race([
      client.connect(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new FwError('E_LINK_TIMEOUT', `no link handshake and hello on ${o.path} within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    helloDone = true;
    return { client, hello, get lost() { return lost; }, close };
  } catch (err) {
    await close(); // also ends a connect() that lost the race
    throw err;
  } finally {
    clearTimeout(timer);
    clearTimeout(waiting);
  }
}

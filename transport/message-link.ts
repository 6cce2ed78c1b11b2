import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { FwError, isFwError } from '../protocol/errors.ts';
import { ArqLink, LinkKeepalive, type ArqOptions, type LinkTimers } from '../protocol/link/index.ts';

export const realLinkTimers: LinkTimers = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface MessageLinkOptions<In, Out> {
  decode: (bytes: Uint8Array) => In;
  encode: (msg: Out) => Uint8Array;
  arq?: Omit<ArqOptions, 'timers' | 'output'>;
  timers?: LinkTimers;
  /** Longest wait for room in the send queue before send() fails. */
  sendTimeoutMs?: number;
}

export interface MessageLinkStats {
  messagesIn: number;
  messagesOut: number;
  invalid: number;
  unknownType: number;
  droppedWhileDown: number;
}

/**
 * Typed messages over a byte stream (a serial port or any Duplex): the link ARQ (framing, CRC,
 * retransmission) below, CBOR message decode/validate above. Messages that do not decode are
 * counted and reported through 'invalid'; they never stop the link.
 */
export class MessageLink<In, Out> extends EventEmitter<{
  message: [In];
  invalid: [FwError, Uint8Array | undefined];
  reset: [];
  down: [FwError];
  closed: [];
}> {
  readonly arq: ArqLink;
  readonly stats: MessageLinkStats = { messagesIn: 0, messagesOut: 0, invalid: 0, unknownType: 0, droppedWhileDown: 0 };
  private isDown = false;
  private closed = false;
  private readonly sendTimeoutMs: number;
  private readonly timers: LinkTimers;
  private keepalive: LinkKeepalive | undefined;
  private readonly onData = (chunk: Buffer): void => this.arq.receive(chunk);
  private readonly onClose = (): void => this.close();

  constructor(private readonly stream: Duplex, private readonly opts: MessageLinkOptions<In, Out>) {
    super();
    this.sendTimeoutMs = opts.sendTimeoutMs ?? 30_000;
    this.timers = opts.timers ?? realLinkTimers;
    this.arq = new ArqLink({
      ...opts.arq,
      timers: this.timers,
      output: (wire, written) => {
        if (!this.closed) stream.write(wire, (err) => { if (!err) written(); });
      },
    });
    this.arq.on('message', (bytes) => this.onMessage(bytes));
    this.arq.on('reset', () => {
      this.stopKeepalive(); // the new peer session agrees again in its hello
      this.isDown = false;
      this.emit('reset');
    });
    this.arq.on('open', () => {
      this.isDown = false;
    });
    this.arq.on('down', () => {
      this.stopKeepalive();
      this.isDown = true;
      this.emit('down', new FwError('E_LINK_TIMEOUT', 'link peer stopped answering'));
    });
    this.arq.on('error', (err) => {
      if (isFwError(err, 'E_MESSAGE_TOO_LONG')) {
        this.stats.invalid++;
        this.emit('invalid', err, undefined);
      }
    });
    stream.on('data', this.onData);
    stream.on('close', this.onClose);
    stream.on('error', this.onClose);
  }

  get down(): boolean {
    return this.isDown;
  }

  /** Active open (the laptop): RESET handshake, bounded by the ARQ retransmit limit. */
  async open(): Promise<void> {
    await this.arq.open();
    this.isDown = false;
  }

  /**
   * Queue one message. Waits (bounded) for room when the queue is full. While the peer is gone
   * (link down) the message is dropped and counted, so a gateway never blocks on a laptop that
   * was unplugged.
   */
  async send(msg: Out): Promise<void> {
    if (this.closed) throw new FwError('E_LINK_CLOSED', 'link is closed');
    if (this.isDown) {
      this.stats.droppedWhileDown++;
      return;
    }
    const bytes = this.opts.encode(msg);
    this.stats.messagesOut++;
    if (this.arq.send(bytes)) return;
    await new Promise<void>((resolve, reject) => {
      const done = (err?: FwError): void => {
        clearTimeout(timer);
        this.arq.off('drain', onDrain);
        this.off('down', onDown);
        this.off('closed', onClosed);
        if (err) reject(err);
        else resolve();
      };
      const onDrain = (): void => done();
      const onDown = (err: FwError): void => done(err);
      const onClosed = (): void => done(new FwError('E_LINK_CLOSED', 'link closed while sending'));
      const timer = setTimeout(() => done(new FwError('E_LINK_TIMEOUT', `no room in the send queue for ${this.sendTimeoutMs} ms`)), this.sendTimeoutMs);
      this.arq.on('drain', onDrain);
      this.on('down', onDown);
      this.on('closed', onClosed);
    });
  }

  /** Resolves when everything sent has been acknowledged (or rejects after timeoutMs). */
  async flush(timeoutMs: number): Promise<void> {
    if (this.arq.unacked === 0 && this.arq.queuedBytes === 0) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.arq.off('idle', onIdle);
        reject(new FwError('E_LINK_TIMEOUT', `link did not drain within ${timeoutMs} ms`));
      }, timeoutMs);
      const onIdle = (): void => {
        clearTimeout(timer);
        resolve();
      };
      this.arq.once('idle', onIdle);
    });
  }

  /**
   * Keepalives both ways as agreed in the hellos (docs/protocol.md §4.11.1): a frame at least
   * every `intervalMs`, the link down after `silenceMs` without one from the peer. Runs until a
   * peer RESET, 'down' or close; starting again replaces the running one.
   */
  startKeepalive(intervalMs: number, silenceMs: number): void {
    this.stopKeepalive();
    if (this.closed || intervalMs <= 0) return;
    this.keepalive = new LinkKeepalive(this.arq, { intervalMs, silenceMs, timers: this.timers });
  }

  stopKeepalive(): void {
    this.keepalive?.stop();
    this.keepalive = undefined;
  }

  /** §4.11.2: a starting passive side (the gateway) tells a peer holding an old session that it is gone. */
  announceReset(): void {
    if (!this.closed) this.arq.announceReset();
  }

  configure(p: { window?: number; maxPayload?: number }): void {
    this.arq.configure(p);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stopKeepalive();
    this.arq.close();
    this.stream.off('data', this.onData);
    this.stream.off('close', this.onClose);
    this.stream.off('error', this.onClose);
    this.emit('closed');
  }

  private onMessage(bytes: Uint8Array): void {
    let msg: In;
    try {
      msg = this.opts.decode(bytes);
    } catch (err) {
      const e = isFwError(err) ? err : new FwError('E_MESSAGE_INVALID', String(err), { cause: err });
      if (e.code === 'E_MESSAGE_TYPE') this.stats.unknownType++;
      else this.stats.invalid++;
      this.emit('invalid', e, bytes);
      return;
    }
    this.stats.messagesIn++;
    this.emit('message', msg);
  }
}

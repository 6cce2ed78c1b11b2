import { createWriteStream, type WriteStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import type { SerialPort } from 'serialport';
import { closeSerialPort, openSerialPort } from '../transport/serial-port.ts';

/** How often a console file is read for new output. */
const FILE_POLL_MS = 100;
/** At most this much console text is kept in memory for pattern waits (the report file has all). */
const KEEP_CHARS = 1024 * 1024;

/**
 * A board's console during one scenario: every byte goes to `outFile` in the report folder, and
 * the text is searchable for the rig's `booted` pattern. The console is a UART (`port`) or, on
 * the simulated rig, a file the fwsim process writes (`file`, read from its size at start).
 */
export class ConsoleCapture {
  private text = '';
  /** Characters dropped from the front of `text` (so marks stay valid). */
  private dropped = 0;
  private readonly out: WriteStream;
  private readonly watchers = new Set<() => void>();
  private stopFn: (() => Promise<void>) | undefined;

  private constructor(outFile: string) {
    this.out = createWriteStream(outFile, { flags: 'a' });
  }

  static async start(source: { port: string; baud: number } | { file: string }, outFile: string): Promise<ConsoleCapture> {
    const c = new ConsoleCapture(outFile);
    if ('port' in source) {
      let port: SerialPort;
      try {
        port = await openSerialPort(source.port, source.baud);
      } catch (err) {
        c.take(`[hil] console ${source.port} not available: ${(err as Error).message}\n`);
        c.stopFn = () => Promise.resolve();
        return c;
      }
      port.on('data', (d: Buffer) => c.take(d.toString('utf8')));
      port.on('error', (err) => c.take(`[hil] console error: ${err.message}\n`));
      c.stopFn = () => closeSerialPort(port);
    } else {
      let offset = await stat(source.file).then((s) => s.size, () => 0);
      let stopped = false;
      let reading: Promise<void> = Promise.resolve();
      const poll = async (): Promise<void> => {
        const size = await stat(source.file).then((s) => s.size, () => 0);
        if (size < offset) offset = 0; // the file was replaced
        if (size === offset) return;
        const fh = await open(source.file, 'r');
        try {
          const buf = Buffer.alloc(size - offset);
          const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
          offset += bytesRead;
          c.take(buf.subarray(0, bytesRead).toString('utf8'));
        } finally {
          await fh.close();
        }
      };
      const timer = setInterval(() => {
        if (stopped) return;
        reading = reading.then(poll).catch(() => undefined);
      }, FILE_POLL_MS);
      c.stopFn = async () => {
        stopped = true;
        clearInterval(timer);
        await reading;
        await poll().catch(() => undefined);
      };
    }
    return c;
  }

  private take(s: string): void {
    this.out.write(s);
    this.text += s;
    if (this.text.length > KEEP_CHARS) {
      const cut = this.text.length - KEEP_CHARS;
      this.text = this.text.slice(cut);
      this.dropped += cut;
    }
    for (const w of [...this.watchers]) w();
  }

  /** A position in the console; `waitFor` can look only at what came after it. */
  mark(): number {
    return this.dropped + this.text.length;
  }

  /** Resolves true when `re` matches the console text after `since`, false at the bound. */
  waitFor(re: RegExp, since: number, timeoutMs: number): Promise<boolean> {
    const seen = (): boolean => re.test(this.text.slice(Math.max(0, since - this.dropped)));
    if (seen()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const check = (): void => {
        if (!seen()) return;
        clearTimeout(timer);
        this.watchers.delete(check);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.watchers.delete(check);
        resolve(false);
      }, timeoutMs);
      this.watchers.add(check);
    });
  }

  async stop(): Promise<void> {
    await this.stopFn?.();
    await new Promise<void>((resolve) => this.out.end(() => resolve()));
  }
}

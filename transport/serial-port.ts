import { stat } from 'node:fs/promises';
import { SerialPort } from 'serialport';
import { FwError } from '../protocol/errors.ts';

/**
 * Open a serial port (a USB-serial adapter, or a pty in tests and the demo). Raw mode, no flow
 * control; the link ARQ does its own. Errors name the path.
 */
export async function openSerialPort(path: string, baudRate: number): Promise<SerialPort> {
  const port = new SerialPort({ path, baudRate, autoOpen: false, hupcl: false });
  await new Promise<void>((resolve, reject) => {
    port.open((err) => (err ? reject(new FwError('E_LINK_CLOSED', `cannot open serial port ${path}: ${err.message}`, { cause: err })) : resolve()));
  });
  return port;
}

export async function closeSerialPort(port: SerialPort): Promise<void> {
  if (!port.isOpen) return;
  await new Promise<void>((resolve) => port.close(() => resolve()));
}

/** Which device a path is now (following symlinks), or undefined when it is gone or cannot be checked. */
export async function ttyIdentity(path: string): Promise<string | undefined> {
  try {
    const st = await stat(path);
    return `${st.dev}:${st.ino}:${st.rdev}`;
  } catch {
    return undefined;
  }
}

/**
 * Watch the path of an open port: `onGone` is called once when the path disappears or names
 * another device (a USB-serial adapter pulled, a pty pair remade). A hung-up tty is not always
 * reported by the port itself: a read that returns 0 bytes is retried by the binding for ever.
 * Returns the function that stops watching.
 */
export async function watchPortPath(path: string, intervalMs: number, onGone: (why: 'disappeared' | 'replaced') => void): Promise<() => void> {
  const identity = await ttyIdentity(path);
  if (identity === undefined) return () => undefined;
  let checking = false;
  let stopped = false;
  const timer = setInterval(() => {
    if (checking || stopped) return;
    checking = true;
    void ttyIdentity(path).then((now) => {
      checking = false;
      if (stopped || now === identity) return;
      stopped = true;
      clearInterval(timer);
      onGone(now === undefined ? 'disappeared' : 'replaced');
    });
  }, intervalMs);
  timer.unref();
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}

/** Close a port, bounded: a port that hangs in close (a hung-up tty) is left to the OS. Resolves true if it closed. */
export async function closeSerialPortWithin(port: SerialPort, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const closed = await Promise.race([
    closeSerialPort(port).then(() => true),
    new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), timeoutMs); }),
  ]);
  clearTimeout(timer);
  return closed;
}

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

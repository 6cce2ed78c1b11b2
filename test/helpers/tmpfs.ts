import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A small file system of its own (tmpfs), for disk-full tests; undefined when this process may not mount (not root). */
export interface SmallDisk {
  dir: string;
  unmount(): void;
}

export function mountSmallDisk(sizeKiB: number): SmallDisk | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'fwgate-small-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeKiB}k`, 'tmpfs', dir], { stdio: 'ignore' });
  } catch {
    rmSync(dir, { recursive: true, force: true });
    return undefined;
  }
  return {
    dir,
    unmount: () => {
      try {
        execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

/** Fill the file system of `dir` to the last byte with `name`; returns its path (delete it to free the space). */
export function fillDisk(dir: string, name = 'filler'): string {
  const path = join(dir, name);
  try {
    execFileSync('dd', ['if=/dev/zero', `of=${path}`, 'bs=64k'], { stdio: 'ignore' });
  } catch { /* dd ends with ENOSPC: that is the point */ }
  try {
    execFileSync('dd', ['if=/dev/zero', `of=${path}`, 'bs=1', 'oflag=append', 'conv=notrunc'], { stdio: 'ignore' });
  } catch { /* the last bytes */ }
  return path;
}

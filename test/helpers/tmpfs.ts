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

/**
 * A small ext4 file system with 1 KiB blocks on a loop device: a full one refuses a journal's
 * next line within a block's slack (tmpfs pages leave up to 4 KiB); undefined when not root or
 * loop devices are unavailable.
 */
export function mountSmallExt4(sizeKiB: number): SmallDisk | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'fwgate-ext4-'));
  const img = `${dir}.img`;
  try {
    execFileSync('truncate', ['-s', `${sizeKiB}k`, img], { stdio: 'ignore' });
    execFileSync('mkfs.ext4', ['-q', '-F', '-b', '1024', '-m', '0', '-O', '^has_journal', img], { stdio: 'ignore' });
    execFileSync('mount', ['-o', 'loop', img, dir], { stdio: 'ignore' });
  } catch {
    rmSync(dir, { recursive: true, force: true });
    rmSync(img, { force: true });
    return undefined;
  }
  return {
    dir,
    unmount: () => {
      try {
        execFileSync('umount', [dir], { stdio: 'ignore' });
      } catch {
        execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
      } finally {
        rmSync(dir, { recursive: true, force: true });
        rmSync(img, { force: true });
      }
    },
  };
}

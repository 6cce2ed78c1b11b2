import { randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';

/** What a temp file's name carries, so start-up clean-ups can find what a crash left behind. */
export const TMP_MARK = '.tmp-';

/**
 * Write a small file atomically and durably: a temp file beside it, fsync, rename over the old
 * file, fsync the directory. A crash leaves the old file or the new one, never a mix (the temp
 * file, if any, carries TMP_MARK).
 */
export async function writeFileDurably(path: string, text: string): Promise<void> {
  const tmp = `${path}${TMP_MARK}${process.pid}-${randomBytes(4).toString('hex')}`;
  const fd = await open(tmp, 'w', 0o644);
  try {
    await fd.writeFile(text, 'utf8');
    await fd.sync();
  } finally {
    await fd.close();
  }
  try {
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await syncDir(dirname(path));
}

/** fsync a directory, so a rename or a new entry in it survives a power cut. */
export async function syncDir(dir: string): Promise<void> {
  const fd = await open(dir, 'r');
  try {
    await fd.sync();
  } finally {
    await fd.close();
  }
}

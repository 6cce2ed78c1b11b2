import { randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FwError } from '../protocol/errors.ts';
import { TMP_MARK } from './durable.ts';

/**
 * `<dataDir>/fwgate.pid`: which process uses a data directory — a running gateway, or `fwgate
 * images prune` while it deletes images. Host commands that change the data directory refuse
 * while another live process holds it, and a second gateway on the same data directory refuses
 * to start.
 *
 * The file is created whole and atomically (a temp file hard-linked to the final name: the link
 * fails when the name exists) and names the pid and, on Linux, the process's start time (field 22
 * of /proc/<pid>/stat), so a pid reused by another process after a crash or a reboot is not taken
 * for the holder. A holder that is dead (or a zombie) is stale: its file is replaced. A gateway
 * removes its file at a clean stop; a crash leaves it, stale.
 */
export const PID_FILE = 'fwgate.pid';

export interface PidRecord {
  pid: number;
  /** What holds it: `gateway`, `images prune`. */
  what: string;
  /** Ms since the epoch when it was taken. */
  at: number;
  /** The process's start time in clock ticks after boot (Linux), to tell a reused pid. */
  startTicks?: number;
}

/** A held pid file; release() removes it if it is still ours. */
export class PidFile {
  constructor(readonly path: string, readonly record: PidRecord) {}

  release(): void {
    const now = readPidRecord(this.path);
    if (now && now.pid === this.record.pid && now.at === this.record.at) {
      try {
        unlinkSync(this.path);
      } catch {
        // already gone
      }
    }
  }
}

/**
 * Take `<dataDir>/fwgate.pid` for this process (`what` says for what). E_CONFIG naming the holder
 * when another live process holds it; a stale file (dead holder, or this very process after an
 * in-process restart) is replaced.
 */
export function acquirePidFile(dataDir: string, what: string, now = Date.now()): PidFile {
  mkdirSync(dataDir, { recursive: true });
  const path = join(dataDir, PID_FILE);
  const startTicks = procStartTicks(process.pid);
  const record: PidRecord = { pid: process.pid, what, at: now, ...(startTicks !== undefined ? { startTicks } : {}) };
  const tmp = `${path}${TMP_MARK}${process.pid}-${randomBytes(4).toString('hex')}`;
  writeFileSync(tmp, `${JSON.stringify(record)}\n`, { mode: 0o644 });
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        linkSync(tmp, path);
        return new PidFile(path, record);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 2) throw err;
      }
      const holder = liveHolder(dataDir);
      if (holder && holder.pid !== process.pid) {
        throw new FwError('E_CONFIG', `the data directory ${dataDir} is in use by fwgate ${holder.what} (pid ${holder.pid}, since ${new Date(holder.at).toISOString()}; ${path}); stop it first, or give another --data`);
      }
      try {
        unlinkSync(path); // stale: its holder is dead, or it is this process's own
      } catch {
        // removed meanwhile
      }
    }
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      // nothing to clean
    }
  }
}

/** The live process holding the data directory, if any (a stale or unreadable file: none). */
export function liveHolder(dataDir: string): PidRecord | undefined {
  const rec = readPidRecord(join(dataDir, PID_FILE));
  return rec && processAlive(rec) ? rec : undefined;
}

function readPidRecord(path: string): PidRecord | undefined {
  try {
    const v = JSON.parse(readFileSync(path, 'utf8')) as Partial<PidRecord>;
    if (!Number.isInteger(v.pid) || (v.pid ?? 0) <= 0) return undefined;
    return {
      pid: v.pid!, what: typeof v.what === 'string' ? v.what : 'process', at: typeof v.at === 'number' ? v.at : 0,
      ...(typeof v.startTicks === 'number' ? { startTicks: v.startTicks } : {}),
    };
  } catch {
    return undefined;
  }
}

/** Whether the recorded process still runs: it exists, is no zombie and (Linux) started when recorded. */
export function processAlive(rec: Pick<PidRecord, 'pid' | 'startTicks'>): boolean {
  try {
    process.kill(rec.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const stat = procStat(rec.pid);
  if (!stat) return true;
  if (stat.state === 'Z' || stat.state === 'X') return false;
  return rec.startTicks === undefined || rec.startTicks === stat.startTicks;
}

function procStartTicks(pid: number): number | undefined {
  return procStat(pid)?.startTicks;
}

/** State and start time from /proc/<pid>/stat (Linux); undefined elsewhere. */
function procStat(pid: number): { state: string; startTicks: number } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // pid (comm) state ppid ... : comm may hold spaces and parentheses, so split after the last ')'
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const startTicks = Number(fields[19]);
  return fields[0] && Number.isFinite(startTicks) ? { state: fields[0], startTicks } : undefined;
}

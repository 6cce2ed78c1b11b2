import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseJournal, type JournalState } from '../rollout/journal.ts';

/**
 * The campaign history as the journals under <dataDir>/journal tell it, read-only: each
 * `<campaign>.jsonl` parsed (CRC-checked lines, a torn tail ignored) and cached by size and mtime,
 * so a page refresh re-reads only journals that changed. Unreadable journals are skipped (the
 * gateway renames them *.corrupt at its next start).
 */
export class JournalHistory {
  private readonly cache = new Map<string, { stamp: string; state: JournalState }>();

  constructor(private readonly dir: string, private readonly limit = 200) {}

  /** Newest first, at most `limit`. */
  async list(): Promise<JournalState[]> {
    let names: string[];
    try {
      names = (await readdir(this.dir)).filter((n) => n.endsWith('.jsonl'));
    } catch {
      return [];
    }
    const out: JournalState[] = [];
    for (const name of names) {
      const state = await this.read(name);
      if (state) out.push(state);
    }
    for (const key of this.cache.keys()) if (!names.includes(key)) this.cache.delete(key);
    return out.sort((a, b) => b.startedAt - a.startedAt).slice(0, this.limit);
  }

  async get(id: string): Promise<JournalState | undefined> {
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(id)) return undefined;
    return this.read(`${id}.jsonl`);
  }

  private async read(name: string): Promise<JournalState | undefined> {
    const path = join(this.dir, name);
    try {
      const st = await stat(path);
      const stamp = `${st.size}:${st.mtimeMs}`;
      const hit = this.cache.get(name);
      if (hit?.stamp === stamp) return hit.state;
      const { state } = parseJournal(await readFile(path, 'utf8'), path);
      this.cache.set(name, { stamp, state });
      return state;
    } catch {
      return undefined;
    }
  }
}

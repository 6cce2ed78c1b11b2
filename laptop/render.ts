import cliProgress from 'cli-progress';
import type { GatewayUplinkMessage, HelloMessage, OrderMessage, ResultMessage } from '../protocol/uplink.ts';

export interface Summary {
  event: 'summary';
  ok: boolean;
  campaign: string | null;
  image: { name: string; version: string; sha256: string };
  devices: number;
  targeted: number;
  updated: number;
  failed: number;
  rolledBack: number;
  skipped: number;
  order: string[];
  durationMs: number;
  message: string;
}

/** What fwpush shows: a person's view on a terminal, or JSON lines for machines. */
export interface Renderer {
  connected(hello: HelloMessage, port: string): void;
  upload(sent: number, total: number, resumedAt: number): void;
  event(msg: GatewayUplinkMessage): void;
  summary(s: Summary): void;
  error(message: string, code?: string): void;
  close(): void;
}

/** One JSON object per line for every event; the summary is the last line. */
export class JsonRenderer implements Renderer {
  private lastUploadAt = 0;
  constructor(private readonly out: NodeJS.WritableStream = process.stdout) {}
  private line(obj: object): void {
    this.out.write(`${JSON.stringify(obj)}\n`);
  }
  connected(hello: HelloMessage, port: string): void {
    this.line({ event: 'connected', port, gateway: hello.agent, maxFrame: hello.maxFrame, window: hello.window });
  }
  upload(sent: number, total: number, resumedAt: number): void {
    const now = Date.now();
    if (sent < total && now - this.lastUploadAt < 250) return;
    this.lastUploadAt = now;
    this.line({ event: 'upload', sent, total, resumedAt });
  }
  event(msg: GatewayUplinkMessage): void {
    const { t, ...rest } = msg;
    this.line({ event: t, ...rest });
  }
  summary(s: Summary): void {
    this.line(s);
  }
  error(message: string, code?: string): void {
    this.line({ event: 'error', code: code ?? null, message });
  }
  close(): void {}
}

/**
 * Human output. On a terminal: an upload bar and a campaign bar that redraw in place; otherwise
 * plain lines (every 10% of the upload, one line per device result).
 */
export class HumanRenderer implements Renderer {
  private readonly tty: boolean;
  /** On a terminal, one container holds every bar; text is logged above it. */
  private multi: cliProgress.MultiBar | undefined;
  private uploadBar: cliProgress.SingleBar | undefined;
  private campaignBar: cliProgress.SingleBar | undefined;
  private uploadStart = 0;
  private lastDecile = -1;
  private targeted = 0;
  private finished = 0;

  constructor(private readonly out: NodeJS.WriteStream = process.stdout) {
    this.tty = Boolean(out.isTTY);
  }

  private bars(): cliProgress.MultiBar {
    this.multi ??= new cliProgress.MultiBar({
      stream: this.out, hideCursor: true, clearOnComplete: false, stopOnComplete: false, autopadding: true,
      format: '{label} [{bar}] {percentage}% | {detail}',
    }, cliProgress.Presets.shades_classic);
    return this.multi;
  }

  private say(text: string): void {
    if (this.multi) {
      this.multi.log(`${text}\n`);
      this.multi.update();
    } else {
      this.out.write(`${text}\n`);
    }
  }

  connected(hello: HelloMessage, port: string): void {
    this.say(`Connected to ${hello.agent} on ${port} (frames of ${hello.maxFrame} B, window ${hello.window})`);
  }

  upload(sent: number, total: number, resumedAt: number): void {
    if (this.tty) {
      if (!this.uploadBar) {
        if (resumedAt > 0) this.say(`Resuming upload at ${fmtBytes(resumedAt)}`);
        this.uploadStart = Date.now();
        this.uploadBar = this.bars().create(total, sent, { label: 'Upload ', detail: '' });
      }
      const secs = (Date.now() - this.uploadStart) / 1000;
      const speed = secs > 0.2 ? ` | ${fmtBytes((sent - resumedAt) / secs)}/s` : '';
      this.uploadBar.update(sent, { label: 'Upload ', detail: `${fmtBytes(sent)} of ${fmtBytes(total)}${speed}` });
      if (sent >= total) {
        // one bar at a time: the finished upload becomes a line of text above what follows
        this.multi?.remove(this.uploadBar);
        this.uploadBar = undefined;
        this.say(`Uploaded ${fmtBytes(total - resumedAt)} in ${fmtMs(Date.now() - this.uploadStart)}${speed ? ` (${speed.slice(3)})` : ''}`);
      }
      return;
    }
    const decile = Math.floor((sent / total) * 10);
    if (decile !== this.lastDecile) {
      if (this.lastDecile < 0 && resumedAt > 0) this.say(`Resuming upload at ${fmtBytes(resumedAt)}`);
      this.lastDecile = decile;
      this.say(`Upload ${String(decile * 10).padStart(3)}% (${fmtBytes(sent)} of ${fmtBytes(total)})`);
    }
  }

  event(msg: GatewayUplinkMessage): void {
    switch (msg.t) {
      case 'committed':
        if (msg.ok) this.say(`Image verified and stored by the gateway (sha256 ${msg.sha256.slice(0, 16)}…); campaign ${msg.campaign ?? '?'} started`);
        return;
      case 'order': return this.order(msg);
      case 'result': return this.result(msg);
      case 'error': return this.say(`Gateway error ${msg.code}: ${msg.reason}`);
      default: return;
    }
  }

  private order(o: OrderMessage): void {
    this.targeted = o.devices.length;
    const lines = [`Rollout order for ${o.image.name} ${o.image.version} (campaign ${o.campaign}), fastest first:`];
    lines.push(`  ${'#'.padStart(3)}  ${'device'.padEnd(20)} ${'from'.padEnd(10)} ${'RTT'.padStart(9)} ${'ETA'.padStart(9)}`);
    for (const d of o.devices) {
      lines.push(`  ${String(d.rank).padStart(3)}  ${d.id.padEnd(20)} ${d.from.padEnd(10)} ${fmtMs(d.rttMs).padStart(9)} ${fmtMs(d.etaMs).padStart(9)}`);
    }
    const excluded = o.excluded.length + (o.excludedMore ?? 0);
    if (excluded) {
      lines.push(`Not updated (${excluded}):`);
      for (const x of o.excluded) lines.push(`  ${x.id.padEnd(20)} ${x.code}: ${x.reason}`);
      if (o.excludedMore) lines.push(`  … and ${o.excludedMore} more (see their results)`);
    }
    this.say(lines.join('\n'));
    if (this.tty && this.targeted > 0) {
      this.campaignBar = this.bars().create(this.targeted, 0, { label: 'Devices', detail: `0 of ${this.targeted} done` });
    }
  }

  private result(r: ResultMessage): void {
    if (r.outcome === 'skipped' && r.durationMs === 0) return; // already listed under "Not updated"
    this.finished++;
    const mark = r.outcome === 'updated' ? 'updated    ' : r.outcome.padEnd(11);
    const retries = r.retries ? `, ${r.retries} retr${r.retries === 1 ? 'y' : 'ies'}` : '';
    this.say(`  ${mark} ${r.id.padEnd(20)} ${r.from} -> ${r.outcome === 'updated' ? r.to : r.from}  (${fmtMs(r.durationMs)}${retries})${r.outcome === 'updated' ? '' : `  ${r.code}: ${r.reason ?? ''}`}`);
    this.campaignBar?.update(this.finished, { label: 'Devices', detail: `${this.finished} of ${this.targeted} done` });
  }

  summary(s: Summary): void {
    this.close();
    this.say(`\n${s.ok ? 'Done' : 'Finished with problems'}: ${s.updated}/${s.targeted} targeted devices updated, ${s.failed} failed, ${s.rolledBack} rolled back, ${s.skipped} skipped (${s.devices} known) in ${fmtMs(s.durationMs)}`);
    if (!s.ok) this.say(s.message);
  }

  error(message: string): void {
    this.close();
    process.stderr.write(`fwpush: ${message}\n`);
  }

  close(): void {
    this.multi?.stop();
    this.multi = undefined;
    this.uploadBar = undefined;
    this.campaignBar = undefined;
  }
}

export function fmtBytes(n: number): string {
  if (n < 1024) return `${Math.round(n)} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(2)} MiB`;
}

export function fmtMs(ms: number | undefined): string {
  if (ms === undefined) return '-';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(1)} s`;
}

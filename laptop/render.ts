import cliProgress from 'cli-progress';
import type {
  CommittedMessage, CompleteMessage, DevicePhase, GatewayUplinkMessage, HelloMessage, OrderMessage, PlannedMessage, ProgressMessage,
  ResultMessage, StateMessage, TotalsMessage, WaitingMessage,
} from '../protocol/uplink.ts';
import { committedLines, fmtIso, queuedEvent, queuedTable, type WhenOptions } from './queued.ts';

export { componentsText, EXIT, exitCodeFor, haltText, preflightText, summarise, type CampaignRecord, type Summary } from './summary.ts';
import { componentsText, haltText, preflightText, type Summary } from './summary.ts';

export interface Renderer {
  connected(hello: HelloMessage, port: string): void;
  upload(sent: number, total: number, resumedAt: number): void;
  event(msg: GatewayUplinkMessage): void;
  summary(s: Summary): void;
  /** A problem that ends fwpush; `hint` says what to do next. */
  error(message: string, code?: string, hint?: string): void;
  close(): void;
}

/** Where text goes: write() is all a pipe needs; a terminal also has isTTY, columns and rows. */
export interface TextOut {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
  rows?: number;
}

/** JSON.stringify replacer: a byte string (e.g. `hello.challenge`) as lowercase hex, not an object of numbered bytes. */
function bytesAsHex(this: unknown, key: string, value: unknown): unknown {
  const raw = (this as Record<string, unknown>)[key];
  return raw instanceof Uint8Array ? Buffer.from(raw).toString('hex') : value;
}

/** One JSON object per line for every event; the summary is the last line. */
export class JsonRenderer implements Renderer {
  private lastUploadAt = -Infinity;
  constructor(private readonly out: TextOut = process.stdout, private readonly now: () => number = Date.now) {}
  private line(obj: object): void {
    this.out.write(`${JSON.stringify(obj, bytesAsHex)}\n`);
  }
  connected(hello: HelloMessage, port: string): void {
    this.line({ event: 'connected', port, gateway: hello.agent, maxFrame: hello.maxFrame, window: hello.window });
  }
  upload(sent: number, total: number, resumedAt: number): void {
    const now = this.now();
    if (sent < total && now - this.lastUploadAt < 250) return;
    this.lastUploadAt = now;
    this.line({ event: 'upload', sent, total, resumedAt });
  }
  event(msg: GatewayUplinkMessage): void {
    const { t, ...rest } = msg;
    this.line({ event: t, ...rest });
    if (msg.t === 'committed' && msg.ok && msg.queued) this.line(queuedEvent({ ...msg, queued: msg.queued }));
  }
  summary(s: Summary): void {
    this.line(s);
  }
  error(message: string, code?: string, hint?: string): void {
    this.line({ event: 'error', code: code ?? null, message, ...(hint ? { hint } : {}) });
  }
  close(): void {}
}

export interface HumanOptions {
  out?: TextOut;
  /** Errors (default process.stderr). */
  err?: { write(chunk: string): unknown };
  now?: () => number;
  /** Most device bars on a terminal at once (fewer when the terminal is short). */
  maxBars?: number;
  /** Least time between two totals lines without a terminal. */
  totalsEveryMs?: number;
  /** Terminal redraws per second. */
  fps?: number;
  /** Time zone for the times of maintenance windows (default: the laptop's). */
  timeZone?: string;
}

const FINAL: ReadonlySet<DevicePhase> = new Set(['done', 'failed', 'rolled-back', 'skipped', 'cancelled', 'superseded', 'expired']);
/** Orders longer than this are listed in part while they run (the completion table has every device). */
const ORDER_PREVIEW = 20;

interface ActiveDevice {
  id: string;
  phase: DevicePhase;
  bytes: number;
  total: number;
  bps: number | undefined;
  etaMs: number | undefined;
  since: number;
  bar?: cliProgress.SingleBar;
}

/**
 * Human output. On a terminal: an upload bar, then an overall campaign bar and one bar per
 * active device (at most `maxBars`), redrawn in place with text logged above them. Otherwise
 * plain lines: upload every 10 %, a line per device phase change, totals at most every 2 s, a
 * line per result. Both end with a table of every device in rollout order and the summary.
 */
export class HumanRenderer implements Renderer {
  private readonly out: TextOut;
  private readonly err: { write(chunk: string): unknown };
  private readonly now: () => number;
  private readonly tty: boolean;
  private readonly maxBars: number;
  private readonly totalsEveryMs: number;
  private readonly fps: number;
  private readonly timeZone: string | undefined;
  /** The port fwpush is connected on, for hints. */
  private port = '<tty>';
  /** On a terminal, one container holds every bar; text is logged above it. */
  private multi: cliProgress.MultiBar | undefined;
  private frames: FrameWriter | undefined;
  private uploadBar: cliProgress.SingleBar | undefined;
  private overallBar: cliProgress.SingleBar | undefined;
  private uploadStart = 0;
  private uploadSeen = { sent: 0, total: 0, resumedAt: 0 };
  private lastDecile = -1;

  private order: OrderMessage | undefined;
  private ranked: Set<string> | undefined;
  private readonly active = new Map<string, ActiveDevice>();
  private readonly results = new Map<string, ResultMessage>();
  private totals: TotalsMessage | undefined;
  private lastTotalsAt = -Infinity;
  private probingSaid = false;
  /** Replaying a finished campaign (status): the table at the end lists the results. */
  private replay = false;
  /** After the summary or an error nothing more is drawn (no bar may outlive fwpush). */
  private ended = false;
  /** Width of the device column: the longest id in the order (or seen so far), within 8..24. */
  private idWidth = 8;

  constructor(opts: HumanOptions | TextOut = {}) {
    const o: HumanOptions = 'write' in opts ? { out: opts } : opts;
    this.out = o.out ?? process.stdout;
    this.err = o.err ?? process.stderr;
    this.now = o.now ?? Date.now;
    this.tty = this.out.isTTY === true;
    this.maxBars = o.maxBars ?? 12;
    this.totalsEveryMs = o.totalsEveryMs ?? 2000;
    this.fps = o.fps ?? 10;
    this.timeZone = o.timeZone;
  }

  private get when(): WhenOptions {
    return { now: this.now(), timeZone: this.timeZone };
  }

  // ---- output plumbing ----

  private bars(): cliProgress.MultiBar {
    this.frames ??= new FrameWriter(this.out);
    this.multi ??= new cliProgress.MultiBar({
      stream: this.frames as unknown as NodeJS.WritableStream,
      fps: this.fps, hideCursor: true, clearOnComplete: true, stopOnComplete: false,
      // Leave the terminal's autowrap on, so long text lines above the bars wrap instead of being
      // cut; bar lines are cut to the width here.
      linewrap: true,
      // Every bar every frame: a line of text logged above shifts the bars down, and a bar drawn
      // only when its own text changed would leave another bar's old line in its place.
      forceRedraw: true,
      format: (_o, params, payload: { line: (width: number) => string }) => fit(payload.line(params.maxWidth - 1), params.maxWidth - 1),
    });
    return this.multi;
  }

  private bar(line: (width: number) => string): cliProgress.SingleBar {
    return this.bars().create(1, 0, { line });
  }

  private say(text: string): void {
    if (this.multi) {
      // Each line clears the row it lands on (and what a wrapped line leaves) before the bars redraw.
      this.multi.log(text.split('\n').map((l) => `\x1b[2K${l}\x1b[K\n`).join(''));
    } else {
      this.out.write(`${text}\n`);
    }
  }

  private get barLimit(): number {
    const rows = this.out.rows;
    return Math.max(1, Math.min(this.maxBars, rows ? rows - 8 : this.maxBars));
  }

  /** Widen the device column for these ids. */
  private widen(ids: Iterable<string>): void {
    for (const id of ids) this.idWidth = Math.min(24, Math.max(this.idWidth, id.length));
  }

  // ---- renderer ----

  connected(hello: HelloMessage, port: string): void {
    this.port = port;
    this.say(`Connected to ${hello.agent} on ${port} (frames of ${hello.maxFrame} B, window ${hello.window})`);
  }

  upload(sent: number, total: number, resumedAt: number): void {
    if (this.ended) return;
    this.uploadSeen = { sent, total, resumedAt };
    if (this.tty) {
      if (!this.uploadBar) {
        if (resumedAt > 0) this.say(`Resuming upload at ${fmtBytes(resumedAt)}`);
        this.uploadStart = this.now();
        this.uploadBar = this.bar((w) => this.uploadLine(w));
      }
      if (sent >= total) {
        // the finished upload becomes a line of text above what follows
        this.multi?.remove(this.uploadBar);
        this.uploadBar = undefined;
        const rate = this.uploadRate();
        this.say(`Uploaded ${fmtBytes(total - resumedAt)} in ${fmtMs(this.now() - this.uploadStart)}${rate ? ` (${rate})` : ''}`);
      }
      return;
    }
    const decile = total > 0 ? Math.floor((sent / total) * 10) : 10;
    if (decile !== this.lastDecile) {
      if (this.lastDecile < 0 && resumedAt > 0) this.say(`Resuming upload at ${fmtBytes(resumedAt)}`);
      this.lastDecile = decile;
      this.say(`Upload ${String(decile * 10).padStart(3)}% (${fmtBytes(sent)} of ${fmtBytes(total)})`);
    }
  }

  event(msg: GatewayUplinkMessage): void {
    if (this.ended) return;
    switch (msg.t) {
      case 'committed': return this.onCommitted(msg);
      case 'state': return this.onState(msg);
      case 'fleet': return this.onFleet(msg);
      case 'order': return this.onOrder(msg);
      case 'progress': return this.onProgress(msg);
      case 'totals': return this.onTotals(msg);
      case 'result': return this.onResult(msg);
      case 'error': return this.say(`Gateway error ${msg.code}: ${msg.reason}`);
      case 'complete': return this.onComplete(msg);
      case 'waiting': return this.onWaiting(msg);
      case 'accepted': return this.say(`Gateway accepted ${msg.request}: campaign ${msg.campaign}${msg.reason ? ` (${msg.reason})` : ''}`);
      case 'planned': return this.onPlanned(msg);
      case 'grant':
        if (msg.preflight) this.say(`Pre-flight: ${preflightText(msg.preflight)}`);
        if (msg.stored) this.say('image already on the gateway: upload skipped');
        return;
      case 'release-grant':
        if (msg.preflight) this.say(`Pre-flight: ${preflightText(msg.preflight)}`);
        this.say(`Release: uploading ${msg.send.length === 0 ? 'nothing' : msg.send.map((c) => c.component).join(', ')}${msg.stored.length > 0 ? `; already on the gateway: ${msg.stored.join(', ')}` : ''}`);
        return;
      case 'hello':
      case 'deny':
        return; // summarised, or answered by the client
      default: {
        const never: never = msg;
        return never;
      }
    }
  }

  private onWaiting(w: WaitingMessage): void {
    const ids = w.devices.slice(0, 8).map((d) => d.id).join(', ');
    if (w.pausedBeforeWave !== undefined) {
      this.say(`Paused before wave ${w.pausedBeforeWave}: fwpush --port ${this.port} resume ${w.campaign} starts it`);
    } else {
      this.say(`${w.pending} device${w.pending === 1 ? '' : 's'} pending at their check-in${w.expiresAt !== undefined ? ` until ${fmtIso(w.expiresAt)}` : ''}${ids ? `: ${ids}${w.devices.length > 8 ? ', …' : ''}` : ''}`);
    }
  }

  private onPlanned(p: PlannedMessage): void {
    this.say(`Plan for ${p.image.name} ${p.image.version} (nothing stored, nothing updated)`);
    this.say(`Pre-flight: ${preflightText(p.preflight)}`);
    for (const d of p.devices) {
      this.say(`  ${String(d.rank).padStart(3)}  ${d.id.padEnd(this.idWidth)}  ${d.from.padEnd(10)}${d.wave !== undefined ? `  wave ${d.wave}` : ''}${d.rttMs !== undefined ? `  rtt ${Math.round(d.rttMs)} ms` : ''}${d.bps !== undefined ? `  ${fmtBytes(d.bps)}/s` : ''}${d.etaMs !== undefined ? `  eta ${fmtMs(d.etaMs)}` : '  pending (offline)'}`);
    }
    for (const x of p.excluded) this.say(`   --  ${x.id.padEnd(this.idWidth)}  ${x.code}: ${x.reason}`);
    if (p.etaMs !== undefined) this.say(`Expected time for the rollout: ${fmtMs(p.etaMs)}`);
  }

  summary(s: Summary): void {
    this.close();
    this.ended = true;
    if (s.queued) {
      this.out.write(`\nQueued: ${s.image.name} ${s.image.version} is stored on the gateway; ${s.message}\n`);
      this.out.write(`Follow it once it starts: fwpush --port ${this.port} status\n`);
      return;
    }
    this.out.write(`\n${this.table(s).join('\n')}\n`);
    const more = [s.pending > 0 ? `${s.pending} pending` : '', s.cancelled > 0 ? `${s.cancelled} cancelled` : '', s.superseded > 0 ? `${s.superseded} superseded` : '', s.expired > 0 ? `${s.expired} expired` : ''].filter(Boolean);
    this.out.write(`\n${s.ok ? 'Done' : s.pending > 0 && s.failed + s.rolledBack === 0 ? 'Done for now' : 'Finished with problems'}: ${s.updated}/${s.targeted} targeted devices updated, ${s.failed} failed, ${s.rolledBack} rolled back, ${s.skipped} skipped${more.length ? `, ${more.join(', ')}` : ''} (${s.devices} known) in ${fmtMs(s.durationMs)}\n`);
    if (s.componentsSent !== undefined) {
      this.out.write(`Components: ${s.componentsSent} sent${s.componentsSkipped !== undefined ? `, ${s.componentsSkipped} already on the devices (not sent)` : ''}\n`);
    }
    if (!s.ok) this.out.write(`${s.message}\n`);
  }

  error(message: string, _code?: string, hint?: string): void {
    this.close();
    this.ended = true;
    this.err.write(`fwpush: ${message}\n`);
    if (hint) this.err.write(`fwpush: ${hint}\n`);
  }

  close(): void {
    if (this.multi) {
      this.multi.update(); // text logged since the last frame
      this.multi.stop();
    }
    this.frames?.flush();
    this.multi = undefined;
    this.uploadBar = undefined;
    this.overallBar = undefined;
    for (const a of this.active.values()) delete a.bar;
  }

  /** The lines the bars show now, top to bottom, as the next frame draws them (tests, debugging). */
  barLines(width = 100): string[] {
    const lines: string[] = [];
    if (this.uploadBar) lines.push(this.uploadLine(width));
    if (this.overallBar) lines.push(this.overallLine(width));
    for (const a of this.active.values()) if (a.bar) lines.push(this.deviceLine(a, width));
    return lines.map((l) => fit(l, width));
  }

  // ---- one handler per gateway message ----

  private onCommitted(c: CommittedMessage): void {
    if (!c.ok) return; // the client gives up with the gateway's code and reason
    if (c.deferred) return this.say(`Release verified and stored by the gateway (digest ${c.sha256.slice(0, 16)}…), deferred: no campaign until \`fwpush release live\` or \`fwgate release live\``);
    const what = c.queued ? 'queued for a maintenance window' : 'started';
    this.say([`Image verified and stored by the gateway (sha256 ${c.sha256.slice(0, 16)}…); campaign ${c.campaign ?? '?'} ${what}`, ...committedLines(c, this.when)].join('\n'));
  }

  private onState(s: StateMessage): void {
    const queued = queuedTable(s.queued ?? [], this.when);
    if (!s.campaign) return this.say([queued.length ? 'gateway idle: no campaign has run since it started' : 'gateway idle: no campaign', ...queued].join('\n'));
    const image = s.image ? `${s.image.name} ${s.image.version}` : 'unknown image';
    this.replay = !s.running;
    this.say([s.running
      ? `Campaign ${s.campaign} (${image}) is running; following it`
      : `Last campaign ${s.campaign} (${image}) has finished; its results:`, ...queued].join('\n'));
  }

  /** The gateway's fleet report (docs/protocol.md §7.11.4): ages by the gateway's clock. */
  private onFleet(f: Extract<GatewayUplinkMessage, { t: 'fleet' }>): void {
    if (f.devices.length === 0 && !f.more) return this.say('Fleet: no device has reported to the gateway yet');
    const ago = (at: number): string => `${fmtAge(f.now - at)} ago`;
    const rows = f.devices.map((d) => {
      const r = d.lastResult;
      return [d.id, d.hw, d.version, d.online ? 'yes' : 'no', ago(d.lastCheckIn), r ? `${r.outcome} (${r.code}) ${r.version}, ${ago(r.at)}, ${r.campaign}` : '-'];
    });
    const head = ['device', 'hw', 'version', 'online', 'last check-in', 'last result'];
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (cells: string[]): string => `  ${cells.map((c, i) => c.padEnd(widths[i]!)).join('  ')}`.trimEnd();
    const total = f.devices.length + (f.more ?? 0);
    this.say([
      `Fleet (${total} device${total === 1 ? '' : 's'} known to the gateway):`, line(head), ...rows.map(line),
      ...(f.more ? [`  … and ${f.more} more (not sent over the link: \`fwgate report\` on the gateway lists every device)`] : []),
    ].join('\n'));
  }

  private onOrder(o: OrderMessage): void {
    this.order = o;
    this.ranked = new Set(o.devices.map((d) => d.id));
    this.widen(this.ranked);
    // Probing is over once the order is out; a device probed and then excluded never gets a final phase.
    for (const a of [...this.active.values()]) if (a.phase === 'probing' || !this.ranked.has(a.id)) this.deactivate(a.id);
    const w = this.idWidth;
    const lines = [`Rollout order for ${o.image.name} ${o.image.version} (campaign ${o.campaign}), fastest first:`];
    lines.push(`  ${'#'.padStart(4)}  ${'device'.padEnd(w)}  ${'from'.padEnd(10)} ${'RTT'.padStart(9)} ${'ETA'.padStart(9)}`);
    for (const d of o.devices.slice(0, ORDER_PREVIEW)) {
      lines.push(`  ${String(d.rank).padStart(4)}  ${d.id.padEnd(w)}  ${d.from.padEnd(10)} ${fmtMs(d.rttMs).padStart(9)} ${fmtMs(d.etaMs).padStart(9)}${componentsText(d)}`);
    }
    if (o.devices.length > ORDER_PREVIEW) lines.push(`  … and ${o.devices.length - ORDER_PREVIEW} more (all in the table at the end)`);
    const excluded = o.excluded.length + (o.excludedMore ?? 0);
    if (excluded) {
      lines.push(`Not updated (${excluded}):`);
      for (const x of o.excluded.slice(0, ORDER_PREVIEW)) lines.push(`  ${x.id.padEnd(w)}  ${x.code}: ${x.reason}`);
      const more = excluded - Math.min(o.excluded.length, ORDER_PREVIEW);
      if (more > 0) lines.push(`  … and ${more} more (all in the table at the end)`);
    }
    this.say(lines.join('\n'));
    this.ensureOverall();
  }

  private onProgress(p: ProgressMessage): void {
    if (this.ranked && !this.ranked.has(p.id)) return; // a probe of a device the order left out
    if (FINAL.has(p.phase) || p.phase === 'queued') return this.deactivate(p.id);
    let a = this.active.get(p.id);
    const changed = a?.phase !== p.phase;
    if (!a) {
      a = { id: p.id, phase: p.phase, bytes: p.bytes, total: p.total, bps: undefined, etaMs: undefined, since: this.now() };
      this.active.set(p.id, a);
      this.widen([p.id]);
    } else if (changed) {
      a.phase = p.phase;
      a.bytes = p.bytes;
      a.since = this.now();
    } else {
      a.bytes = Math.max(a.bytes, p.bytes); // never backwards within a phase
    }
    a.total = p.total;
    a.bps = p.bps;
    a.etaMs = p.etaMs;
    if (this.tty) {
      if (this.replay) return; // a finished campaign has nothing live to draw
      this.ensureOverall();
      this.fillBars();
    } else if (changed) {
      this.phaseLine(a);
    }
  }

  private onTotals(t: TotalsMessage): void {
    this.totals = t;
    if (this.tty || this.replay) return; // the overall bar shows them
    const now = this.now();
    if (now - this.lastTotalsAt < this.totalsEveryMs) return;
    this.lastTotalsAt = now;
    this.say(`Totals: ${totalsText(t).join(', ')}`);
  }

  private onResult(r: ResultMessage): void {
    this.results.set(r.id, r);
    this.deactivate(r.id);
    if (this.replay) return;
    if (r.outcome === 'skipped' && r.durationMs === 0 && !this.ranked?.has(r.id)) return; // already listed under "Not updated"
    const retries = r.retries ? `, ${r.retries} retr${r.retries === 1 ? 'y' : 'ies'}` : '';
    const updated = r.outcome === 'updated';
    this.say(`  ${(updated ? 'updated' : r.outcome).padEnd(12)} ${r.id.padEnd(this.idWidth)}  ${r.from} -> ${updated ? r.to : r.from}  (${fmtMs(r.durationMs)}${retries})${updated ? '' : `  ${r.code}${r.reason ? `: ${r.reason}` : ''}`}`);
  }

  /** The totals are in the summary; a halt is said at once, as the gateway reports it. */
  private onComplete(c: CompleteMessage): void {
    if (c.closed) this.say(`Campaign ${c.campaign} was closed by the gateway without running: ${c.closed.reason}`);
    if (!c.halted) return;
    const notUpdated = [...this.results.values()].filter((r) => r.code === 'campaign-halted').length;
    const text = haltText(c.halted);
    this.say(`${text[0]!.toUpperCase()}${text.slice(1)}${notUpdated ? `; ${notUpdated} device${notUpdated === 1 ? '' : 's'} not updated because of it` : ''}`);
  }

  // ---- plain lines ----

  private phaseLine(a: ActiveDevice): void {
    if (a.phase === 'probing') {
      if (!this.probingSaid) this.say('Measuring the link to each device (round trip, throughput)…');
      this.probingSaid = true;
      return;
    }
    this.say(`  ${a.phase.padEnd(12)} ${a.id}${a.phase === 'transferring' && a.bytes > 0 ? `  (from ${fmtBytes(a.bytes)})` : ''}`);
  }

  // ---- bars ----

  private ensureOverall(): void {
    if (!this.tty || this.overallBar || this.replay) return;
    if (this.order && this.order.devices.length === 0) return;
    this.overallBar = this.bar((w) => this.overallLine(w));
  }

  /** Give a bar to active devices without one, first come first served, up to the limit. */
  private fillBars(): void {
    let shown = [...this.active.values()].filter((a) => a.bar).length;
    for (const a of this.active.values()) {
      if (shown >= this.barLimit) break;
      if (a.bar) continue;
      a.bar = this.bar((w) => this.deviceLine(a, w));
      shown++;
    }
  }

  private deactivate(id: string): void {
    const a = this.active.get(id);
    if (!a) return;
    this.active.delete(id);
    if (a.bar) {
      this.multi?.remove(a.bar);
      if (this.tty) this.fillBars();
    }
  }

  private uploadRate(): string {
    const { sent, resumedAt } = this.uploadSeen;
    const secs = (this.now() - this.uploadStart) / 1000;
    return secs > 0.2 ? `${fmtBytes((sent - resumedAt) / secs)}/s` : '';
  }

  /**
   * Every bar line is `<name>  <state>  [bar]  <details>`, the bars one width so they line up;
   * details that do not fit are dropped, least important first.
   */
  private row(name: string, state: string, fraction: number, width: number, details: Detail[]): string {
    const head = `${name.padEnd(this.idWidth)}  ${state.padEnd(12)}  `;
    const barW = Math.max(6, Math.min(30, width - this.idWidth - 16 - 2 - DETAIL_BUDGET));
    return fitDetails(`${head}[${drawBar(fraction, barW)}]`, details, width);
  }

  private uploadLine(width: number): string {
    const { sent, total } = this.uploadSeen;
    return this.row('Upload', 'to gateway', sent / Math.max(total, 1), width, [
      { text: pct(sent, total), keep: 3 }, { text: `${fmtBytes(sent)} of ${fmtBytes(total)}`, keep: 1 }, { text: this.uploadRate(), keep: 2 },
    ]);
  }

  private overallLine(width: number): string {
    const waiting = [...this.active.values()].filter((a) => !a.bar).length;
    const more: Detail = { text: waiting > 0 ? `+${waiting} more active` : '', keep: 4 };
    if (!this.order) return fitDetails(`${'Devices'.padEnd(this.idWidth)}  ${'probing'.padEnd(12)}`, [{ text: `measuring the links to ${this.active.size} devices`, keep: 5 }, more], width);
    const t = this.totals;
    const devices = t?.devices ?? this.order.devices.length;
    const done = t?.done ?? 0;
    return this.row('Devices', `${done}/${devices} done`, done / Math.max(devices, 1), width, [
      { text: t ? `${fmtBytes(t.kib * 1024)} of ${fmtBytes(t.totalKib * 1024)}` : '', keep: 1 },
      { text: t ? `${fmtBytes(t.bps)}/s` : '', keep: 2 },
      { text: t?.etaMs !== undefined && done < devices ? `ETA ${fmtMs(t.etaMs)}` : '', keep: 3 },
      more,
    ]);
  }

  private deviceLine(a: ActiveDevice, width: number): string {
    // The gateway does not say when a probe ends (the order does), so probing shows no time.
    if (a.phase === 'probing') return fit(`${a.id.padEnd(this.idWidth)}  probing`, width);
    if (a.phase !== 'transferring') return fit(`${a.id.padEnd(this.idWidth)}  ${a.phase.padEnd(12)}  for ${fmtMs(this.now() - a.since)}`, width);
    return this.row(a.id, a.phase, a.bytes / Math.max(a.total, 1), width, [
      { text: pct(a.bytes, a.total), keep: 3 },
      { text: (a.bps !== undefined ? `${fmtBytes(a.bps)}/s` : '').padStart(10), keep: 1 },
      { text: a.etaMs !== undefined ? `ETA ${fmtMs(a.etaMs)}` : '', keep: 2 },
    ]);
  }

  // ---- completion ----

  /** Every device of the campaign in rollout order, then the excluded ones, with why it was not updated. */
  private table(s: Summary): string[] {
    const rank = new Map((this.order?.devices ?? []).map((d) => [d.id, d.rank]));
    const ids = [...new Set([...s.order, ...(this.order?.excluded.map((x) => x.id) ?? []), ...this.results.keys()])];
    const rows = ids.map((id) => {
      const r = this.results.get(id);
      const updated = r?.outcome === 'updated';
      return [
        rank.has(id) ? String(rank.get(id)) : '-', id, r?.outcome ?? 'no result', r?.from || '-', updated ? r.to : '-',
        r && r.durationMs > 0 ? fmtMs(r.durationMs) : '-', String(r?.retries ?? '-'), r && !updated ? `${r.code}${r.reason ? `: ${r.reason}` : ''}` : '',
      ];
    });
    if (rows.length === 0) return [`No device took part in campaign ${s.campaign ?? '-'}.`];
    const head = ['#', 'device', 'result', 'from', 'to', 'duration', 'retries', 'reason'];
    const right = new Set([0, 5, 6]);
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (cells: string[]): string => `  ${cells.map((c, i) => (i === cells.length - 1 ? c : right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ')}`.trimEnd();
    return [`Results for ${s.image.name} ${s.image.version} (campaign ${s.campaign ?? '-'}), in rollout order:`, line(head), ...rows.map(line)];
  }
}

/**
 * cli-progress draws a frame with many small writes (cursor moves, each line, clears); a terminal
 * that paints between them shows half a frame. This gathers the writes of one turn of the event
 * loop into one.
 */
class FrameWriter implements TextOut {
  private pending = '';
  constructor(private readonly out: TextOut) {}
  get isTTY(): boolean | undefined {
    return this.out.isTTY;
  }
  get columns(): number | undefined {
    return this.out.columns;
  }
  get rows(): number | undefined {
    return this.out.rows;
  }
  write(chunk: string): boolean {
    if (this.pending === '') queueMicrotask(() => this.flush());
    this.pending += chunk;
    return true;
  }
  flush(): void {
    if (this.pending === '') return;
    const frame = this.pending;
    this.pending = '';
    this.out.write(frame);
  }
}

function totalsText(t: TotalsMessage): string[] {
  return [
    `${t.done}/${t.devices} done`, `${fmtBytes(t.kib * 1024)} of ${fmtBytes(t.totalKib * 1024)}`, `${fmtBytes(t.bps)}/s`,
    ...(t.etaMs !== undefined && t.done < t.devices ? [`ETA ${fmtMs(t.etaMs)}`] : []),
  ];
}

function pct(n: number, total: number): string {
  return `${String(total > 0 ? Math.floor((Math.min(n, total) * 100) / total) : 100).padStart(3)}%`;
}

/** A detail after a bar; the one with the lowest `keep` goes first when the line is too long. */
interface Detail {
  text: string;
  keep: number;
}

/** Room the details of a device bar take at most (percentage, rate, ETA), so bars share one width. */
const DETAIL_BUDGET = 32;

function fitDetails(start: string, details: Detail[], width: number): string {
  let shown = details.filter((d) => d.text.trim() !== '');
  const line = (): string => [start, ...shown.map((d) => d.text)].join('  ');
  while (shown.length > 0 && line().length > width) {
    const least = shown.reduce((a, b) => (b.keep < a.keep ? b : a));
    shown = shown.filter((d) => d !== least);
  }
  return fit(line(), width);
}

function drawBar(fraction: number, width: number): string {
  const full = Math.round(Math.min(1, Math.max(0, fraction)) * width);
  return '\u2588'.repeat(full) + '\u2591'.repeat(width - full);
}

function fit(line: string, width: number): string {
  return (line.length > width ? line.slice(0, Math.max(0, width)) : line).trimEnd();
}

export function fmtBytes(n: number): string {
  if (n < 1024) return `${Math.round(n)} B`;
  const kib = n / 1024;
  if (kib < 1024) return `${kib < 10 ? kib.toFixed(1) : Math.round(kib)} KiB`;
  const mib = kib / 1024;
  if (mib < 1024) return `${mib.toFixed(1)} MiB`;
  return `${(mib / 1024).toFixed(2)} GiB`;
}

/** An age: as fmtMs, in days and hours from a day on. */
function fmtAge(ms: number): string {
  const day = 86_400_000;
  if (ms < day) return fmtMs(Math.max(0, ms));
  return `${Math.floor(ms / day)} d ${Math.floor((ms % day) / 3_600_000)} h`;
}

export function fmtMs(ms: number | undefined): string {
  if (ms === undefined) return '-';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)} s`;
  const secs = Math.round(ms / 1000);
  if (secs < 60) return `${secs} s`;
  const mins = Math.floor(secs / 60);
  if (mins < 60) return `${mins} min ${String(secs % 60).padStart(2, '0')} s`;
  return `${Math.floor(mins / 60)} h ${String(mins % 60).padStart(2, '0')} min`;
}

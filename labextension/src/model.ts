/**
 * The sidebar's data and the pure functions that shape it for display.
 *
 * Nothing here touches the DOM or JupyterLab, so it is unit-tested in node
 * (test/model.test.ts).  The types mirror what the server returns
 * (trainorch_jupyter/server/manager.py).
 */

export interface IGpu {
  index: number;
  uuid: string;
  name: string;
  memory_mb?: number;
  token?: string;
  memory_total_mb?: number | null;
  memory_used_mb?: number | null;
  utilization_pct?: number | null;
}

export interface IEngine {
  slot: number;
  engine: number | null;
  host: string;
  pid: number | null;
  device: string;
  state: string;
  job?: string;
  gpu: IGpu | null;
}

export interface IPool {
  id: string;
  state: string;
  owned: boolean;
  launcher: string;
  owner: { host: string; pid: number; kernel: string };
  cluster_file: string | null;
  started: number;
  engines: IEngine[];
  jobs: string[];
}

export interface IPoolsReply {
  host: string;
  gpu_source: string;
  gpus: IGpu[];
  pools: IPool[];
}

export interface IRank {
  rank: number;
  engine_id: number | null;
  host: string | null;
  device: string | null;
  state: string;
  step: number | null;
  total: number | null;
  metrics: { [name: string]: number };
  error: string | null;
}

export interface ITrial {
  number: number;
  state: string;
  params: { [name: string]: unknown };
  value: number | null;
  values: number[] | null;
  intermediate: { [step: string]: number };
  engine_id: number | null;
  device: string | null;
  started: number | null;
  ended: number | null;
  error: string | null;
}

export interface IStudy {
  job_id: string;
  name: string;
  directions: string[];
  sampler: string | null;
  pruner: string | null;
  n_trials: number | null;
  job_state: string;
  created: number;
  counts: { [state: string]: number };
  best: ITrial | null;
  trials?: ITrial[];
}

export interface IValidation {
  job_id: string;
  name: string | null;
  model: string | null;
  task: string | null;
  n_samples: number | null;
  metrics: { [name: string]: number };
  bounds: { metric: string; op: string; bound: number; value: number; passed: boolean }[];
  passed: boolean | null;
  created: number;
}

export interface IJob {
  id: string;
  kind: string;
  framework: string | null;
  world_size: number | null;
  state: string;
  created: number | null;
  started: number | null;
  ended: number | null;
  error: string | null;
  owner_host?: string;
  owner_pid?: number;
  // detail only
  source?: string;
  ranks?: IRank[];
  step?: number | null;
  total?: number | null;
  elapsed?: number | null;
  study?: IStudy | null;
  trials?: ITrial[];
  result?: IValidation | null;
  final?: boolean;
}

export interface ILogPage {
  rank: number;
  offset: number;
  next_offset: number;
  size: number;
  text: string;
  eof: boolean;
}

export interface IMetricPoint {
  seq: number;
  t: number;
  step: number | null;
  values: { [name: string]: number };
}

export interface IMetricsReply {
  job: string;
  ranks: { rank: number; points: IMetricPoint[] }[];
}

/** A query string from the defined values only ('' when there are none). */
export function query(params: { [key: string]: string | number | null | undefined }): string {
  const parts = Object.keys(params)
    .filter(k => params[k] !== null && params[k] !== undefined)
    .map(k => `${encodeURIComponent(k)}=${encodeURIComponent(String(params[k]))}`);
  return parts.length ? `?${parts.join('&')}` : '';
}

export const FINAL_STATES = ['done', 'failed', 'cancelled', 'lost'];

export function isFinal(state: string): boolean {
  return FINAL_STATES.indexOf(state) >= 0;
}

/** "4.2 s", "3 min 05 s", "2 h 01 min". */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !isFinite(seconds) || seconds < 0) {
    return '';
  }
  if (seconds < 60) {
    return `${seconds < 10 ? seconds.toFixed(1) : Math.round(seconds)} s`;
  }
  const m = Math.floor(seconds / 60);
  if (m < 60) {
    return `${m} min ${String(Math.floor(seconds % 60)).padStart(2, '0')} s`;
  }
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}

/** "20.0 / 79.6 GiB" from MiB figures; '' when unknown. */
export function formatMemory(usedMb: number | null | undefined, totalMb: number | null | undefined): string {
  const gib = (mb: number) => (mb / 1024).toFixed(1);
  if (totalMb === null || totalMb === undefined) {
    return '';
  }
  if (usedMb === null || usedMb === undefined) {
    return `${gib(totalMb)} GiB`;
  }
  return `${gib(usedMb)} / ${gib(totalMb)} GiB`;
}

/** A metric value, short: 4 significant digits, no exponent for ordinary numbers. */
export function formatNumber(v: unknown): string {
  if (typeof v !== 'number') {
    return v === null || v === undefined ? '' : String(v);
  }
  if (Number.isInteger(v)) {
    return String(v);
  }
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) {
    return v.toExponential(2);
  }
  return String(Number(v.toPrecision(4)));
}

/** "step 120/3000 (4%)" or '' */
export function formatProgress(step: number | null | undefined, total: number | null | undefined): string {
  if (step === null || step === undefined) {
    return '';
  }
  if (!total) {
    return `step ${step}`;
  }
  return `step ${step}/${total} (${Math.floor((100 * step) / total)}%)`;
}

/** One line for a job in the sidebar list. */
export function jobSummary(job: IJob): string {
  const parts = [job.kind];
  if (job.framework) {
    parts.push(job.framework);
  }
  if (job.world_size) {
    parts.push(`${job.world_size} rank${job.world_size === 1 ? '' : 's'}`);
  }
  return parts.join(' · ');
}

/** One line for a pool: "2 GPU engines on gpu01 (kernel 3f2a…)". */
export function poolSummary(pool: IPool): string {
  const n = pool.engines.length;
  const kind = pool.engines.some(e => e.gpu) ? 'GPU' : 'CPU';
  const hosts = Array.from(new Set(pool.engines.map(e => e.host).filter(h => !!h)));
  const where = hosts.length === 1 ? ` on ${hosts[0]}` : hosts.length > 1 ? ` on ${hosts.length} hosts` : '';
  return `${n} ${kind} engine${n === 1 ? '' : 's'}${where}`;
}

/** Pools worth showing: running ones first, then the most recent stopped/gone ones (at most `keepStopped`). */
export function visiblePools(pools: IPool[], keepStopped: number): IPool[] {
  const running = pools.filter(p => p.state === 'running');
  const other = pools.filter(p => p.state !== 'running').slice(0, Math.max(0, keepStopped));
  return running.concat(other);
}

/** "direction best=0.91 (#3)" for a study row. */
export function studySummary(study: IStudy): string {
  const done = Object.keys(study.counts)
    .sort()
    .map(k => `${study.counts[k]} ${k.toLowerCase()}`)
    .join(', ');
  const best = study.best ? `best ${formatNumber(study.best.value)} (#${study.best.number})` : 'no result yet';
  const total = study.n_trials ? ` of ${study.n_trials}` : '';
  return `${best} · ${done || 'no trials'}${total}`;
}

/** The columns of a trial table: number, state, value, then every parameter name seen. */
export function trialColumns(trials: ITrial[]): string[] {
  const names = new Set<string>();
  for (const t of trials) {
    Object.keys(t.params || {}).forEach(k => names.add(k));
  }
  return ['#', 'state', 'value'].concat(Array.from(names).sort());
}

export function trialRow(t: ITrial, columns: string[]): string[] {
  return columns.map(c => {
    if (c === '#') {
      return String(t.number);
    }
    if (c === 'state') {
      return t.state;
    }
    if (c === 'value') {
      return t.values ? t.values.map(formatNumber).join(', ') : formatNumber(t.value);
    }
    return formatNumber(t.params ? t.params[c] : undefined);
  });
}

/**
 * A rank's log as the view keeps it: pages appended in order, at most
 * `maxLines` lines kept (older ones dropped, and counted).
 */
export class LogBuffer {
  constructor(maxLines: number) {
    this.maxLines = Math.max(1, maxLines);
  }

  /** Where to ask for the next page (null: ask for the tail). */
  get nextOffset(): number | null {
    return this._next;
  }

  /** Lines dropped to keep at most `maxLines`. */
  get dropped(): number {
    return this._dropped;
  }

  /** True when earlier lines exist that this buffer never held (it started at the tail, or dropped some). */
  get truncated(): boolean {
    return this._midway || this._dropped > 0;
  }

  /** Add a page; false when it does not continue what we have (the caller restarts from its tail). */
  append(page: ILogPage): boolean {
    if (this._next !== null && page.offset !== this._next) {
      return false;
    }
    if (this._next === null && page.offset > 0) {
      this._midway = true; // started from the tail: earlier lines exist
    }
    this._next = page.next_offset;
    const parts = (this._partial + page.text).split('\n');
    this._partial = parts.pop() as string;
    for (const line of parts) {
      this._lines.push(line);
    }
    const over = this._lines.length - this.maxLines;
    if (over > 0) {
      this._lines.splice(0, over);
      this._dropped += over;
    }
    return true;
  }

  /** The text shown: complete lines, each ending with a newline, then the partial one. */
  get display(): string {
    return this._lines.map(l => l + '\n').join('') + this._partial;
  }

  reset(): void {
    this._lines = [];
    this._partial = '';
    this._next = null;
    this._dropped = 0;
    this._midway = false;
  }

  readonly maxLines: number;
  private _lines: string[] = [];
  private _partial = '';
  private _next: number | null = null;
  private _dropped = 0;
  private _midway = false;
}

export interface ISeries {
  metric: string;
  rank: number;
  points: [number, number][]; // (step or seq, value)
}

/** One series per (metric, rank), x = step when reported, else the report's sequence number. */
export function metricSeries(reply: IMetricsReply): ISeries[] {
  const out: ISeries[] = [];
  for (const r of reply.ranks) {
    const byMetric = new Map<string, [number, number][]>();
    for (const p of r.points) {
      const x = p.step !== null && p.step !== undefined ? p.step : p.seq;
      for (const name of Object.keys(p.values || {})) {
        const v = p.values[name];
        if (typeof v !== 'number' || !isFinite(v)) {
          continue;
        }
        if (!byMetric.has(name)) {
          byMetric.set(name, []);
        }
        byMetric.get(name)!.push([x, v]);
      }
    }
    for (const name of Array.from(byMetric.keys()).sort()) {
      out.push({ metric: name, rank: r.rank, points: byMetric.get(name)! });
    }
  }
  return out;
}

/** Merge a newer metrics reply (points after the last seq we had) into an older one. */
export function mergeMetrics(old: IMetricsReply | null, update: IMetricsReply, maxPoints: number): IMetricsReply {
  if (!old || old.job !== update.job) {
    return update;
  }
  const ranks = new Map<number, IMetricPoint[]>();
  for (const r of old.ranks) {
    ranks.set(r.rank, r.points.slice());
  }
  for (const r of update.ranks) {
    const pts = ranks.get(r.rank) || [];
    const last = pts.length ? pts[pts.length - 1].seq : -1;
    for (const p of r.points) {
      if (p.seq > last) {
        pts.push(p);
      }
    }
    ranks.set(r.rank, pts.slice(-maxPoints));
  }
  return {
    job: update.job,
    ranks: Array.from(ranks.keys())
      .sort((a, b) => a - b)
      .map(rank => ({ rank, points: ranks.get(rank)! }))
  };
}

/** The highest seq seen (ask the server only for what came after). */
export function lastSeq(reply: IMetricsReply | null): number {
  let last = -1;
  for (const r of reply ? reply.ranks : []) {
    for (const p of r.points) {
      last = Math.max(last, p.seq);
    }
  }
  return last;
}

export interface IChartPath {
  metric: string;
  rank: number;
  d: string;
}

export interface IChart {
  paths: IChartPath[];
  xRange: [number, number];
  yRange: [number, number];
}

/**
 * SVG path data for the series of one metric, scaled into width x height
 * (y grows downwards in SVG, so larger values are drawn higher).
 */
export function chartPaths(series: ISeries[], width: number, height: number, pad = 4): IChart {
  const xs: number[] = [];
  const ys: number[] = [];
  for (const s of series) {
    for (const [x, y] of s.points) {
      xs.push(x);
      ys.push(y);
    }
  }
  if (!xs.length) {
    return { paths: [], xRange: [0, 0], yRange: [0, 0] };
  }
  const x0 = Math.min(...xs);
  const x1 = Math.max(...xs);
  const y0 = Math.min(...ys);
  const y1 = Math.max(...ys);
  const sx = (x: number) => pad + (x1 === x0 ? (width - 2 * pad) / 2 : ((x - x0) / (x1 - x0)) * (width - 2 * pad));
  const sy = (y: number) =>
    height - pad - (y1 === y0 ? (height - 2 * pad) / 2 : ((y - y0) / (y1 - y0)) * (height - 2 * pad));
  const r = (v: number) => Math.round(v * 10) / 10;
  const paths = series
    .filter(s => s.points.length)
    .map(s => ({
      metric: s.metric,
      rank: s.rank,
      d: s.points.map(([x, y], i) => `${i ? 'L' : 'M'}${r(sx(x))},${r(sy(y))}`).join(' ')
    }));
  return { paths, xRange: [x0, x1], yRange: [y0, y1] };
}

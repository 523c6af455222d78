import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { fill, h, svg } from './dom';
import {
  chartPaths,
  formatDuration,
  formatNumber,
  formatProgress,
  IJob,
  ILogPage,
  IMetricsReply,
  isFinal,
  IValidation,
  jobSummary,
  lastSeq,
  LogBuffer,
  mergeMetrics,
  metricSeries,
  studySummary
} from './model';
import { IPollSettings, WidgetPoll } from './poller';
import { query, requestAPI } from './request';

export interface IJobViewSettings extends IPollSettings {
  logLines: number;
}

const CHART_W = 560;
const CHART_H = 180;
const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];

/** A job in the main area: header and Stop, ranks, the metrics chart, and each rank's log. */
export class JobView extends Widget {
  constructor(jobId: string, settings: IJobViewSettings, openStudy?: (id: string) => void) {
    super();
    this._openStudy = openStudy;
    this.jobId = jobId;
    this.addClass('trainorch-jobview');
    this._settings = settings;
    this._header = h('div', { class: 'trainorch-job-header' });
    this._ranks = h('div', { class: 'trainorch-job-ranks' });
    this._metricSelect = h('select', { class: 'trainorch-metric-select',
                                       onchange: () => this._renderChart() }) as HTMLSelectElement;
    this._chart = h('div', { class: 'trainorch-chart' });
    this._rankTabs = h('div', { class: 'trainorch-rank-tabs' });
    this._log = h('pre', { class: 'trainorch-log' });
    this._logNote = h('div', { class: 'trainorch-dim trainorch-log-note' });
    this.node.append(
      this._header, this._ranks,
      h('div', { class: 'trainorch-chart-box' },
        h('div', { class: 'trainorch-row' }, h('h3', {}, 'Metrics'), this._metricSelect), this._chart),
      h('div', { class: 'trainorch-log-box' },
        h('div', { class: 'trainorch-row' }, h('h3', {}, 'Logs'), this._rankTabs), this._logNote, this._log)
    );
    this._poll = new WidgetPoll(this, `trainorch:job-${jobId}`, () => this._tick(), settings);
  }

  readonly jobId: string;

  set settings(settings: IJobViewSettings) {
    this._settings = settings;
    this._poll.settings = settings;
  }

  refresh(): Promise<void> {
    return this._poll.refresh();
  }

  dispose(): void {
    this._poll.dispose();
    super.dispose();
  }

  protected onAfterShow(msg: Message): void {
    void this.refresh();
  }

  private async _tick(): Promise<void> {
    const job = await requestAPI<IJob>(`jobs/${this.jobId}`);
    const update = await requestAPI<IMetricsReply>(`jobs/${this.jobId}/metrics` + query({ after: lastSeq(this._metrics) }));
    this._metrics = mergeMetrics(this._metrics, update, 5000);
    this._job = job;
    this._renderHeader();
    this._renderRanks();
    this._renderChart();
    const eof = await this._followLog();
    if (job.final && eof) {
      this._poll.stop(); // nothing will change any more
    }
  }

  private async _followLog(): Promise<boolean> {
    const ranks = (this._job?.ranks || []).map(r => r.rank);
    if (ranks.indexOf(this._rank) < 0 && ranks.length) {
      this._rank = ranks[0];
    }
    fill(this._rankTabs, ranks.map(r =>
      h('button', { class: `jp-Button trainorch-rank-tab${r === this._rank ? ' trainorch-selected' : ''}`,
                    'data-rank': String(r), onclick: () => this._selectRank(r) }, `rank ${r}`)));
    let buf = this._logs.get(this._rank);
    if (!buf) {
      buf = new LogBuffer(this._settings.logLines);
      this._logs.set(this._rank, buf);
    }
    let eof = false;
    for (let i = 0; i < 8 && !eof; i++) { // catch up a few pages per tick
      const page = await requestAPI<ILogPage>(
        `jobs/${this.jobId}/log` + query({ rank: this._rank, offset: buf.nextOffset, limit: 65536 }));
      if (!buf.append(page)) {
        buf.reset();
        continue;
      }
      eof = page.eof;
    }
    const atBottom = this._log.scrollTop + this._log.clientHeight >= this._log.scrollHeight - 8;
    this._log.textContent = buf.display;
    fill(this._logNote, buf.truncated ? `earlier lines are in jobs/${this.jobId}/rank-${this._rank}.log` : '');
    if (atBottom) {
      this._log.scrollTop = this._log.scrollHeight;
    }
    return eof;
  }

  private _selectRank(rank: number): void {
    this._rank = rank;
    void this.refresh();
  }

  private _renderHeader(): void {
    const j = this._job!;
    const stop = isFinal(j.state) ? null
      : h('button', { class: 'jp-Button trainorch-job-stop', onclick: () => void this._stop() }, 'Stop');
    fill(this._header,
      h('div', { class: 'trainorch-row' },
        h('h2', { class: 'trainorch-mono' }, `job ${j.id}`), h('span', {
          class: `trainorch-badge trainorch-state-${j.state}` }, j.state), stop),
      h('div', { class: 'trainorch-dim' },
        [jobSummary(j), formatProgress(j.step, j.total), formatDuration(j.elapsed)].filter(s => s).join(' · ')),
      j.error ? h('div', { class: 'trainorch-error' }, j.error) : null,
      j.study && this._openStudy
        ? h('div', { class: 'trainorch-row' }, `study ${j.study.name}: ${studySummary(j.study)}`,
            h('button', { class: 'jp-Button trainorch-open-study',
                          onclick: () => this._openStudy!(j.id) }, 'Open trials'))
        : null,
      j.result ? this._validation(j.result) : null);
  }

  private _validation(v: IValidation): HTMLElement {
    const verdict = v.passed === null ? 'unchecked' : v.passed ? 'passed' : 'failed';
    return h('div', { class: 'trainorch-validation-result' },
      h('div', { class: 'trainorch-row' }, `validation ${v.name || ''} of ${v.model || 'a model'}`,
        h('span', { class: `trainorch-badge trainorch-state-${verdict}` }, verdict),
        v.n_samples ? h('span', { class: 'trainorch-dim' }, `${v.n_samples} samples`) : null),
      h('table', { class: 'trainorch-table' },
        h('thead', {}, h('tr', {}, ...['metric', 'value', 'bound', ''].map(c => h('th', {}, c)))),
        h('tbody', {}, ...Object.keys(v.metrics).sort().map(name => {
          const b = (v.bounds || []).find(x => x.metric === name);
          return h('tr', {}, h('td', {}, name), h('td', {}, formatNumber(v.metrics[name])),
            h('td', {}, b ? `${b.op} ${formatNumber(b.bound)}` : ''),
            h('td', {}, b ? (b.passed ? 'ok' : 'FAILED') : ''));
        }))));
  }

  private async _stop(): Promise<void> {
    await requestAPI(`jobs/${this.jobId}/stop`, { method: 'POST', body: '{}' });
    void this.refresh();
  }

  private _renderRanks(): void {
    const ranks = this._job?.ranks || [];
    const names = Array.from(new Set(ranks.flatMap(r => Object.keys(r.metrics || {})))).sort();
    fill(this._ranks, h('table', { class: 'trainorch-table' },
      h('thead', {}, h('tr', {}, ...['rank', 'host', 'device', 'state', 'progress', ...names].map(c => h('th', {}, c)))),
      h('tbody', {}, ...ranks.map(r => h('tr', {},
        h('td', {}, String(r.rank)), h('td', {}, r.host || ''), h('td', {}, r.device || ''),
        h('td', {}, r.state), h('td', {}, formatProgress(r.step, r.total)),
        ...names.map(n => h('td', {}, formatNumber(r.metrics[n]))))))));
  }

  private _renderChart(): void {
    const series = this._metrics ? metricSeries(this._metrics) : [];
    const metrics = Array.from(new Set(series.map(s => s.metric))).sort();
    const chosen = metrics.indexOf(this._metricSelect.value) >= 0 ? this._metricSelect.value : metrics[0];
    if (metrics.join('\n') !== this._metricNames) {
      this._metricNames = metrics.join('\n');
      fill(this._metricSelect, metrics.map(m => h('option', { value: m }, m)));
    }
    if (chosen) {
      this._metricSelect.value = chosen;
    }
    const chart = chartPaths(series.filter(s => s.metric === chosen), CHART_W, CHART_H);
    if (!chart.paths.length) {
      fill(this._chart, h('p', { class: 'trainorch-empty' }, 'No metrics reported yet (report(loss=...)).'));
      return;
    }
    const el = svg('svg', { viewBox: `0 0 ${CHART_W} ${CHART_H}`, width: String(CHART_W), height: String(CHART_H),
                            class: 'trainorch-chart-svg', role: 'img' },
      svg('rect', { x: '0', y: '0', width: String(CHART_W), height: String(CHART_H), class: 'trainorch-chart-bg' }),
      ...chart.paths.map(p => svg('path', { d: p.d, fill: 'none', stroke: COLORS[p.rank % COLORS.length],
                                            'stroke-width': '1.5', 'data-rank': String(p.rank) })));
    fill(this._chart, el,
      h('div', { class: 'trainorch-dim' },
        `${chosen}: ${formatNumber(chart.yRange[0])} – ${formatNumber(chart.yRange[1])} over step ` +
        `${chart.xRange[0]} – ${chart.xRange[1]} · ` +
        chart.paths.map(p => `rank ${p.rank}`).join(', ')));
  }

  private _settings: IJobViewSettings;
  private _openStudy?: (id: string) => void;
  private _poll: WidgetPoll;
  private _job: IJob | null = null;
  private _metrics: IMetricsReply | null = null;
  private _metricNames = '';
  private _rank = 0;
  private _logs = new Map<number, LogBuffer>();
  private _header: HTMLElement;
  private _ranks: HTMLElement;
  private _metricSelect: HTMLSelectElement;
  private _chart: HTMLElement;
  private _rankTabs: HTMLElement;
  private _log: HTMLElement;
  private _logNote: HTMLElement;
}

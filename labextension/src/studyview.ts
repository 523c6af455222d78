import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { fill, h } from './dom';
import { IStudy, isFinal, studySummary, trialColumns, trialRow } from './model';
import { IPollSettings, WidgetPoll } from './poller';
import { requestAPI } from './request';

/** A study run in the main area: its settings and the trial table, best first marked. */
export class StudyView extends Widget {
  constructor(jobId: string, settings: IPollSettings) {
    super();
    this.jobId = jobId;
    this.addClass('trainorch-studyview');
    this._header = h('div', { class: 'trainorch-job-header' });
    this._table = h('div', { class: 'trainorch-trials' });
    this.node.append(this._header, this._table);
    this._poll = new WidgetPoll(this, `trainorch:study-${jobId}`, () => this._tick(), settings);
  }

  readonly jobId: string;

  set settings(settings: IPollSettings) {
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
    const s = await requestAPI<IStudy>(`studies/${this.jobId}`);
    const trials = s.trials || [];
    fill(this._header,
      h('div', { class: 'trainorch-row' }, h('h2', {}, `study ${s.name}`),
        h('span', { class: `trainorch-badge trainorch-state-${s.job_state}` }, s.job_state)),
      h('div', { class: 'trainorch-dim' },
        [`job ${s.job_id}`, (s.directions || []).join(', '), s.sampler, s.pruner].filter(x => x).join(' · ')),
      h('div', {}, studySummary(s)));
    const columns = trialColumns(trials);
    const best = s.best ? s.best.number : -1;
    fill(this._table, trials.length
      ? h('table', { class: 'trainorch-table trainorch-trial-table' },
          h('thead', {}, h('tr', {}, ...columns.map(c => h('th', {}, c)), h('th', {}, 'device'), h('th', {}, 'error'))),
          h('tbody', {}, ...trials.map(t =>
            h('tr', { class: t.number === best ? 'trainorch-best' : '', 'data-trial': String(t.number) },
              ...trialRow(t, columns).map(v => h('td', {}, v)),
              h('td', {}, t.device || ''), h('td', {}, t.error || '')))))
      : h('p', { class: 'trainorch-empty' }, 'No trials yet.'));
    if (isFinal(s.job_state)) {
      this._poll.stop();
    }
  }

  private _poll: WidgetPoll;
  private _header: HTMLElement;
  private _table: HTMLElement;
}

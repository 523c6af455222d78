import { showDialog, Dialog } from '@jupyterlab/apputils';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { fill, h } from './dom';
import {
  formatMemory,
  formatNumber,
  formatProgress,
  IJob,
  IPool,
  IPoolsReply,
  IStudy,
  IValidation,
  isFinal,
  jobSummary,
  poolSummary,
  studySummary,
  visiblePools
} from './model';
import { IPollSettings, WidgetPoll } from './poller';
import { query, requestAPI } from './request';

export interface ISidebarSettings extends IPollSettings {
  jobsShown: number;
  stoppedPoolsShown: number;
  confirmPoolActions: boolean;
  showValidations: boolean;
}

export interface ISidebarActions {
  openJob(id: string): void;
  openStudy(id: string): void;
}

function badge(state: string): HTMLElement {
  return h('span', { class: `trainorch-badge trainorch-state-${state.replace(/[^a-z]/gi, '')}` }, state);
}

/** The left sidebar: Pool, Jobs, Studies and Validations, polled from the server. */
export class TrainorchSidebar extends Widget {
  constructor(settings: ISidebarSettings, actions: ISidebarActions) {
    super();
    this.id = 'trainorch-sidebar';
    this.addClass('trainorch-sidebar');
    this._settings = settings;
    this._actions = actions;
    this._status = h('div', { class: 'trainorch-status' });
    const section = (name: string) => {
      const body = h('div', { class: 'trainorch-section-body' });
      const el = h('section', { class: `trainorch-section trainorch-section-${name.toLowerCase()}` },
        h('h3', { class: 'trainorch-section-title' }, name), body);
      this.node.appendChild(el);
      return body;
    };
    this.node.appendChild(
      h('div', { class: 'trainorch-sidebar-header' },
        h('h2', {}, 'Training'),
        h('button', { class: 'jp-Button trainorch-refresh', title: 'Refresh now', onclick: () => void this.refresh() },
          'Refresh'))
    );
    this.node.appendChild(this._status);
    this._pools = section('Pool');
    this._jobs = section('Jobs');
    this._studies = section('Studies');
    this._validations = section('Validations');
    this._poll = new WidgetPoll(this, 'trainorch:sidebar', () => this._tick(), settings);
  }

  set settings(settings: ISidebarSettings) {
    this._settings = settings;
    this._poll.settings = settings;
    void this.refresh();
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
    try {
      const [pools, jobs, studies, validations] = await Promise.all([
        requestAPI<IPoolsReply>('pools'),
        requestAPI<IJob[]>('jobs' + query({ limit: this._settings.jobsShown })),
        requestAPI<IStudy[]>('studies' + query({ limit: 20 })),
        this._settings.showValidations ? requestAPI<IValidation[]>('validations' + query({ limit: 20 })) : []
      ]);
      this._renderPools(pools);
      this._renderJobs(jobs);
      this._renderStudies(studies);
      this._renderValidations(validations);
      fill(this._status);
      this._status.classList.remove('trainorch-error');
    } catch (error) {
      fill(this._status, `The trainorch server extension did not answer (${error}); retrying with backoff.`);
      this._status.classList.add('trainorch-error');
      throw error; // the Poll backs off
    }
  }

  private _renderPools(reply: IPoolsReply): void {
    const pools = visiblePools(reply.pools, this._settings.stoppedPoolsShown);
    const rows: HTMLElement[] = pools.map(p => this._pool(p));
    if (!pools.length) {
      rows.push(h('p', { class: 'trainorch-empty' }, 'No pool. %cluster start, or run a %%distribute cell.'));
    }
    if (reply.gpus.length) {
      rows.push(
        h('div', { class: 'trainorch-gpus' },
          h('div', { class: 'trainorch-caption' }, `GPUs on ${reply.host} (${reply.gpu_source})`),
          ...reply.gpus.map(g =>
            h('div', { class: 'trainorch-gpu' },
              h('span', {}, `GPU ${g.index} ${g.name}`),
              h('span', { class: 'trainorch-dim' },
                [formatMemory(g.memory_used_mb, g.memory_total_mb),
                 g.utilization_pct === null || g.utilization_pct === undefined ? '' : `${g.utilization_pct}%`]
                  .filter(s => s).join(' · '))
            )
          ))
      );
    }
    fill(this._pools, rows);
  }

  private _pool(p: IPool): HTMLElement {
    const running = p.state === 'running';
    const actions = running
      ? h('span', { class: 'trainorch-actions' },
          h('button', { class: 'jp-Button trainorch-pool-restart', title: 'Restart every engine',
                        onclick: () => void this._poolAction(p, 'restart', null) }, 'Restart'),
          h('button', { class: 'jp-Button trainorch-pool-stop', title: 'Stop the pool (cancels its jobs)',
                        onclick: () => void this._poolAction(p, 'stop', null) }, 'Stop pool'))
      : null;
    const multiHost = new Set(p.engines.map(e => e.host)).size > 1; // one host: the summary names it
    const engines = h('table', { class: 'trainorch-table trainorch-engines' },
      h('thead', {}, h('tr', {}, ...['engine', multiHost ? 'host' : null, 'device', 'GPU', 'state', '']
        .filter(c => c !== null).map(c => h('th', {}, c as string)))),
      h('tbody', {}, ...p.engines.map(e => {
        const gpu = e.gpu
          ? [formatMemory(e.gpu.memory_used_mb, e.gpu.memory_total_mb || (e.gpu.memory_mb ?? null)),
             e.gpu.utilization_pct === null || e.gpu.utilization_pct === undefined ? '' : `${e.gpu.utilization_pct}%`]
              .filter(s => s).join(' · ')
          : '';
        return h('tr', { 'data-engine': String(e.engine) },
          h('td', {}, String(e.engine ?? '')), multiHost ? h('td', {}, e.host || '') : null,
          h('td', { title: e.device }, e.gpu ? `GPU ${e.gpu.index}` : e.device),
          h('td', { class: 'trainorch-wrap' }, gpu), h('td', {}, badge(e.state)),
          h('td', {}, running && e.engine !== null
            ? h('button', { class: 'jp-Button trainorch-engine-restart', title: `Restart engine ${e.engine}`,
                            onclick: () => void this._poolAction(p, 'restart', e.engine) }, '↻')
            : ''));
      })));
    const owner = p.owner && p.owner.kernel ? `kernel ${p.owner.kernel.slice(0, 8)}` : `pid ${p.owner?.pid}`;
    return h('div', { class: 'trainorch-pool', 'data-pool-id': p.id },
      h('div', { class: 'trainorch-row' },
        h('span', { class: 'trainorch-title' }, poolSummary(p)), badge(p.state), actions),
      h('div', { class: 'trainorch-dim' }, `pool ${p.id} · ${p.launcher} · ${owner}`),
      engines);
  }

  private async _poolAction(p: IPool, action: 'stop' | 'restart', engine: number | null): Promise<void> {
    const what = action === 'stop' ? `Stop pool ${p.id}? Its running jobs are cancelled.`
      : engine === null ? `Restart every engine of pool ${p.id}? Running jobs are cancelled.`
      : `Restart engine ${engine}? A job running on it is cancelled.`;
    if (this._settings.confirmPoolActions) {
      const result = await showDialog({
        title: action === 'stop' ? 'Stop the pool' : 'Restart engines',
        body: what,
        buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: action === 'stop' ? 'Stop' : 'Restart' })]
      });
      if (!result.button.accept) {
        return;
      }
    }
    try {
      await requestAPI(`pools/${p.id}/${action}`, {
        method: 'POST',
        body: JSON.stringify(engine === null ? {} : { engine })
      });
      fill(this._status, `Asked the kernel owning pool ${p.id} to ${action}${engine === null ? '' : ` engine ${engine}`}.`);
    } catch (error) {
      fill(this._status, `Could not ${action}: ${error}`);
    }
    void this.refresh();
  }

  private _renderJobs(jobs: IJob[]): void {
    if (!jobs.length) {
      fill(this._jobs, h('p', { class: 'trainorch-empty' }, 'No jobs yet.'));
      return;
    }
    fill(this._jobs, jobs.map(j =>
      h('div', { class: 'trainorch-job trainorch-clickable', 'data-job-id': j.id, title: 'Open the job',
                 onclick: () => this._actions.openJob(j.id) },
        h('div', { class: 'trainorch-row' },
          h('span', { class: 'trainorch-title trainorch-mono' }, j.id.slice(0, 12)), badge(j.state),
          isFinal(j.state) ? null
            : h('button', { class: 'jp-Button trainorch-job-stop', title: 'Stop this job',
                            onclick: (ev: Event) => { ev.stopPropagation(); void this._stopJob(j.id); } }, 'Stop')),
        h('div', { class: 'trainorch-dim' },
          [jobSummary(j), isFinal(j.state) ? '' : formatProgress(j.step, j.total), j.error || '']
            .filter(s => s).join(' · ')))));
  }

  private async _stopJob(id: string): Promise<void> {
    try {
      await requestAPI(`jobs/${id}/stop`, { method: 'POST', body: '{}' });
      fill(this._status, `Stop requested for job ${id}.`);
    } catch (error) {
      fill(this._status, `Could not stop job ${id}: ${error}`);
    }
    void this.refresh();
  }

  private _renderStudies(studies: IStudy[]): void {
    if (!studies.length) {
      fill(this._studies, h('p', { class: 'trainorch-empty' }, 'No studies yet (%tune).'));
      return;
    }
    fill(this._studies, studies.map(s =>
      h('div', { class: 'trainorch-study trainorch-clickable', 'data-study-id': s.job_id, title: 'Open the trials',
                 onclick: () => this._actions.openStudy(s.job_id) },
        h('div', { class: 'trainorch-row' },
          h('span', { class: 'trainorch-title' }, s.name), badge(s.job_state),
          h('span', { class: 'trainorch-dim' }, (s.directions || []).join(', '))),
        h('div', { class: 'trainorch-dim' }, studySummary(s)))));
  }

  private _renderValidations(validations: IValidation[]): void {
    this._validations.parentElement!.style.display = this._settings.showValidations ? '' : 'none';
    if (!validations.length) {
      fill(this._validations, h('p', { class: 'trainorch-empty' }, 'No validations yet (%validate).'));
      return;
    }
    fill(this._validations, validations.map(v =>
      h('div', { class: 'trainorch-validation', 'data-validation-id': v.job_id },
        h('div', { class: 'trainorch-row' },
          h('span', { class: 'trainorch-title' }, v.name || v.job_id.slice(0, 12)),
          badge(v.passed === null ? 'unchecked' : v.passed ? 'passed' : 'failed'),
          h('span', { class: 'trainorch-dim' }, v.model || '')),
        h('div', { class: 'trainorch-dim' },
          Object.keys(v.metrics).sort().map(k => `${k} ${formatNumber(v.metrics[k])}`).join(' · ')))));
  }

  private _settings: ISidebarSettings;
  private _actions: ISidebarActions;
  private _poll: WidgetPoll;
  private _status: HTMLElement;
  private _pools: HTMLElement;
  private _jobs: HTMLElement;
  private _studies: HTMLElement;
  private _validations: HTMLElement;
}

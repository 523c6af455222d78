import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, MainAreaWidget } from '@jupyterlab/apputils';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon } from '@jupyterlab/ui-components';

import { JobView } from './jobview';
import { ISidebarSettings, TrainorchSidebar } from './sidebar';
import { StudyView } from './studyview';

const PLUGIN_ID = 'trainorch-jupyter:plugin';

const ICON_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24">' +
  '<g class="jp-icon3" fill="#616161">' +
  '<rect x="3" y="13" width="4" height="8" rx="1"/><rect x="10" y="8" width="4" height="13" rx="1"/>' +
  '<rect x="17" y="3" width="4" height="18" rx="1"/></g></svg>';

export const trainorchIcon = new LabIcon({ name: 'trainorch-jupyter:icon', svgstr: ICON_SVG });

interface ISettings extends ISidebarSettings {
  logLines: number;
}

const DEFAULTS: ISettings = {
  interval: 2000,
  maxInterval: 30000,
  jobsShown: 20,
  stoppedPoolsShown: 2,
  confirmPoolActions: true,
  showValidations: true,
  logLines: 5000
};

function readSettings(s: ISettingRegistry.ISettings | null): ISettings {
  if (!s) {
    return DEFAULTS;
  }
  const get = <T>(key: string, fallback: T): T => {
    const v = s.get(key).composite;
    return v === undefined || v === null ? fallback : (v as unknown as T);
  };
  return {
    interval: get('pollInterval', DEFAULTS.interval),
    maxInterval: get('maxPollInterval', DEFAULTS.maxInterval),
    jobsShown: get('jobsShown', DEFAULTS.jobsShown),
    stoppedPoolsShown: get('stoppedPoolsShown', DEFAULTS.stoppedPoolsShown),
    confirmPoolActions: get('confirmPoolActions', DEFAULTS.confirmPoolActions),
    showValidations: get('showValidations', DEFAULTS.showValidations),
    logLines: get('logLines', DEFAULTS.logLines)
  };
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'The trainorch sidebar: engine pool, jobs, studies and validations.',
  autoStart: true,
  optional: [ISettingRegistry, ILayoutRestorer, ICommandPalette],
  activate: async (
    app: JupyterFrontEnd,
    registry: ISettingRegistry | null,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null
  ) => {
    let settings = DEFAULTS;
    let loaded: ISettingRegistry.ISettings | null = null;
    if (registry) {
      try {
        loaded = await registry.load(PLUGIN_ID);
        settings = readSettings(loaded);
      } catch (error) {
        console.warn('trainorch: could not load settings, using defaults', error);
      }
    }
    const views = new Map<string, MainAreaWidget<JobView | StudyView>>();

    const open = (key: string, make: () => JobView | StudyView, label: string) => {
      let w = views.get(key);
      if (!w || w.isDisposed) {
        const content = make();
        w = new MainAreaWidget({ content });
        w.id = `trainorch-${key}`;
        w.title.label = label;
        w.title.icon = trainorchIcon;
        w.title.closable = true;
        views.set(key, w);
        w.disposed.connect(() => views.delete(key));
        app.shell.add(w, 'main');
      }
      app.shell.activateById(w.id);
    };

    app.commands.addCommand('trainorch:open-job', {
      label: 'Open a training job',
      execute: args => {
        const id = String(args.id);
        open(`job-${id}`, () => new JobView(id, settings, sid => void app.commands.execute('trainorch:open-study', { id: sid })),
             `job ${id.slice(0, 8)}`);
      }
    });
    app.commands.addCommand('trainorch:open-study', {
      label: 'Open a study',
      execute: args => {
        const id = String(args.id);
        open(`study-${id}`, () => new StudyView(id, settings), `study ${id.slice(0, 8)}`);
      }
    });

    const sidebar = new TrainorchSidebar(settings, {
      openJob: id => void app.commands.execute('trainorch:open-job', { id }),
      openStudy: id => void app.commands.execute('trainorch:open-study', { id })
    });
    sidebar.title.icon = trainorchIcon;
    sidebar.title.caption = 'Training: pool, jobs, studies';
    app.shell.add(sidebar, 'left', { rank: 650 });
    if (restorer) {
      restorer.add(sidebar, 'trainorch-sidebar');
    }

    app.commands.addCommand('trainorch:refresh', {
      label: 'Refresh the training sidebar',
      execute: () => sidebar.refresh()
    });
    app.commands.addCommand('trainorch:show-sidebar', {
      label: 'Show the training sidebar',
      execute: () => app.shell.activateById(sidebar.id)
    });
    if (palette) {
      palette.addItem({ command: 'trainorch:show-sidebar', category: 'Training' });
      palette.addItem({ command: 'trainorch:refresh', category: 'Training' });
    }

    if (loaded) {
      loaded.changed.connect(() => {
        settings = readSettings(loaded);
        sidebar.settings = settings;
        views.forEach(w => {
          w.content.settings = settings;
        });
      });
    }
  }
};

export default plugin;

import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

export interface IPollSettings {
  /** Milliseconds between polls while all is well. */
  interval: number;
  /** The longest wait after repeated failures (the interval backs off up to it). */
  maxInterval: number;
}

/**
 * A Poll tied to a widget: it ticks every `interval` ms, backs off (up to
 * `maxInterval`) while requests fail, and stands by while the widget is
 * hidden (sidebar collapsed, tab in the background) or the browser tab is.
 * Showing the widget again polls at once.
 */
export class WidgetPoll {
  constructor(widget: Widget, name: string, factory: () => Promise<void>, settings: IPollSettings) {
    this._widget = widget;
    this._poll = new Poll({
      name,
      factory,
      frequency: WidgetPoll.frequency(settings),
      standby: () => document.hidden || !this._widget.isVisible
    });
  }

  static frequency(settings: IPollSettings) {
    const interval = Math.max(250, settings.interval);
    return { interval, backoff: true, max: Math.max(interval, settings.maxInterval) };
  }

  set settings(settings: IPollSettings) {
    this._poll.frequency = WidgetPoll.frequency(settings);
  }

  refresh(): Promise<void> {
    return this._poll.refresh();
  }

  /** Stop for good (a finished job's view). */
  stop(): void {
    void this._poll.stop();
  }

  get isDisposed(): boolean {
    return this._poll.isDisposed;
  }

  dispose(): void {
    this._poll.dispose();
  }

  private _widget: Widget;
  private _poll: Poll;
}

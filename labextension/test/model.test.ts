// Unit tests for the sidebar's model code (node's own test runner: `npm test`).
import { strict as assert } from 'node:assert';
import { test } from 'node:test';

import {
  chartPaths,
  formatDuration,
  formatMemory,
  formatNumber,
  formatProgress,
  IMetricsReply,
  IPool,
  IStudy,
  ITrial,
  isFinal,
  jobSummary,
  lastSeq,
  LogBuffer,
  mergeMetrics,
  metricSeries,
  poolSummary,
  query,
  studySummary,
  trialColumns,
  trialRow,
  visiblePools
} from '../src/model';

test('durations, memory, numbers and progress read well', () => {
  assert.equal(formatDuration(4.21), '4.2 s');
  assert.equal(formatDuration(42.4), '42 s');
  assert.equal(formatDuration(185), '3 min 05 s');
  assert.equal(formatDuration(7260), '2 h 01 min');
  assert.equal(formatDuration(null), '');
  assert.equal(formatDuration(-1), '');
  assert.equal(formatMemory(20480, 81559), '20.0 / 79.6 GiB');
  assert.equal(formatMemory(null, 81559), '79.6 GiB');
  assert.equal(formatMemory(10, null), '');
  assert.equal(formatNumber(0.123456), '0.1235');
  assert.equal(formatNumber(3), '3');
  assert.equal(formatNumber(0.00001234), '1.23e-5');
  assert.equal(formatNumber(null), '');
  assert.equal(formatNumber('adam'), 'adam');
  assert.equal(formatProgress(120, 3000), 'step 120/3000 (4%)');
  assert.equal(formatProgress(5, null), 'step 5');
  assert.equal(formatProgress(null, 10), '');
  assert.ok(isFinal('cancelled') && !isFinal('running'));
});

function pool(id: string, state: string, engines: number, gpu: boolean, hosts = ['node1']): IPool {
  return {
    id, state, owned: true, launcher: 'local', owner: { host: 'node1', pid: 1, kernel: 'k' }, cluster_file: null,
    started: 0, jobs: [],
    engines: Array.from({ length: engines }, (_, k) => ({
      slot: k, engine: k, host: hosts[k % hosts.length], pid: 10 + k, device: gpu ? `cuda:${k}` : 'cpu',
      state: 'idle', gpu: gpu ? { index: k, uuid: `GPU-${k}`, name: 'H100' } : null
    }))
  };
}

test('pools: summary and which ones are shown', () => {
  assert.equal(poolSummary(pool('a', 'running', 2, false)), '2 CPU engines on node1');
  assert.equal(poolSummary(pool('a', 'running', 1, true)), '1 GPU engine on node1');
  assert.equal(poolSummary(pool('a', 'running', 4, true, ['n1', 'n2'])), '4 GPU engines on 2 hosts');
  const pools = [pool('s1', 'stopped', 1, false), pool('r1', 'running', 1, false), pool('g1', 'gone', 1, false),
                 pool('s2', 'stopped', 1, false)];
  assert.deepEqual(visiblePools(pools, 2).map(p => p.id), ['r1', 's1', 'g1']);
  assert.deepEqual(visiblePools(pools, 0).map(p => p.id), ['r1']);
});

test('jobs and studies: one line each', () => {
  assert.equal(jobSummary({ id: 'x', kind: 'distribute', framework: 'torch', world_size: 2, state: 'running',
                            created: 0, started: 0, ended: null, error: null }), 'distribute · torch · 2 ranks');
  const trial = (n: number, state: string, value: number | null, params: { [k: string]: unknown }): ITrial => ({
    number: n, state, value, values: null, params, intermediate: {}, engine_id: 0, device: 'cpu', started: null,
    ended: null, error: null });
  const best = trial(3, 'COMPLETE', 0.91234, { lr: 0.01 });
  const study: IStudy = { job_id: 'j', name: 'digits', directions: ['maximize'], sampler: null, pruner: null,
                          n_trials: 10, job_state: 'running', created: 0, counts: { COMPLETE: 3, PRUNED: 1 }, best };
  assert.equal(studySummary(study), 'best 0.9123 (#3) · 3 complete, 1 pruned of 10');
  assert.equal(studySummary({ ...study, best: null, counts: {}, n_trials: null }), 'no result yet · no trials');
  const trials = [trial(0, 'COMPLETE', 0.5, { lr: 0.1, layers: 2 }), trial(1, 'RUNNING', null, { lr: 0.2, act: 'relu' })];
  const cols = trialColumns(trials);
  assert.deepEqual(cols, ['#', 'state', 'value', 'act', 'layers', 'lr']);
  assert.deepEqual(trialRow(trials[0], cols), ['0', 'COMPLETE', '0.5', '', '2', '0.1']);
  assert.deepEqual(trialRow(trials[1], cols), ['1', 'RUNNING', '', 'relu', '', '0.2']);
  assert.deepEqual(trialRow({ ...trials[0], values: [0.5, 2] }, cols).slice(0, 3), ['0', 'COMPLETE', '0.5, 2']);
});

test('a log buffer follows pages, keeps the last lines and restarts on a gap', () => {
  const buf = new LogBuffer(3);
  assert.equal(buf.nextOffset, null);
  assert.ok(buf.append({ rank: 0, offset: 0, next_offset: 9, size: 9, text: 'a\nb\nc\npar', eof: true }));
  assert.equal(buf.display, 'a\nb\nc\npar');
  assert.ok(!buf.truncated);
  assert.ok(buf.append({ rank: 0, offset: 9, next_offset: 14, size: 14, text: 'tial\nd\n', eof: true }));
  assert.equal(buf.display, 'c\npartial\nd\n');
  assert.equal(buf.dropped, 2);
  assert.ok(buf.truncated);
  assert.equal(buf.nextOffset, 14);
  // a page that does not continue (the file was replaced): refused, the caller resets
  assert.ok(!buf.append({ rank: 0, offset: 3, next_offset: 5, size: 5, text: 'x', eof: true }));
  buf.reset();
  assert.equal(buf.display, '');
  assert.ok(buf.append({ rank: 0, offset: 100, next_offset: 104, size: 104, text: 'end\n', eof: true }));
  assert.ok(buf.truncated); // started at the tail
});

const reply = (job: string, ranks: [number, [number, number | null, number][]][]): IMetricsReply => ({
  job,
  ranks: ranks.map(([rank, pts]) => ({
    rank, points: pts.map(([seq, step, loss]) => ({ seq, t: seq, step, values: { loss, acc: 1 - loss } }))
  }))
});

test('metrics become one series per metric and rank, merged incrementally', () => {
  const first = reply('j', [[0, [[0, 1, 0.9], [1, 2, 0.5]]], [1, [[0, 1, 0.8]]]]);
  const series = metricSeries(first);
  assert.deepEqual(series.map(s => `${s.metric}/${s.rank}`), ['acc/0', 'loss/0', 'acc/1', 'loss/1']);
  assert.deepEqual(series[1].points, [[1, 0.9], [2, 0.5]]);
  assert.equal(lastSeq(first), 1);
  assert.equal(lastSeq(null), -1);
  const more = reply('j', [[0, [[1, 2, 0.5], [2, 3, 0.25]]], [2, [[0, null, 0.7]]]]);
  const merged = mergeMetrics(first, more, 100);
  assert.deepEqual(merged.ranks.map(r => r.rank), [0, 1, 2]);
  assert.deepEqual(merged.ranks[0].points.map(p => p.seq), [0, 1, 2]); // seq 1 not doubled
  assert.deepEqual(metricSeries(merged).find(s => s.metric === 'loss' && s.rank === 2)!.points, [[0, 0.7]]); // x = seq
  assert.deepEqual(mergeMetrics(first, more, 2).ranks[0].points.map(p => p.seq), [1, 2]);
  assert.equal(mergeMetrics(first, reply('other', []), 10).job, 'other');
  // NaN and non-numbers are skipped, not drawn
  const odd: IMetricsReply = { job: 'j', ranks: [{ rank: 0, points: [{ seq: 0, t: 0, step: 1, values: { loss: NaN } }] }] };
  assert.deepEqual(metricSeries(odd), []);
});

test('chart paths scale into the box, larger values higher', () => {
  const chart = chartPaths([{ metric: 'loss', rank: 0, points: [[0, 1], [10, 0]] }], 100, 50, 0);
  assert.equal(chart.paths[0].d, 'M0,0 L100,50');
  assert.deepEqual(chart.xRange, [0, 10]);
  assert.deepEqual(chart.yRange, [0, 1]);
  const flat = chartPaths([{ metric: 'x', rank: 1, points: [[5, 2]] }], 100, 50, 0);
  assert.equal(flat.paths[0].d, 'M50,25');
  assert.deepEqual(chartPaths([], 100, 50).paths, []);
});

test('query strings carry only defined values, encoded', () => {
  assert.equal(query({ rank: 1, offset: null, limit: 65536 }), '?rank=1&limit=65536');
  assert.equal(query({ offset: undefined }), '');
  assert.equal(query({ name: 'a b&c' }), '?name=a%20b%26c');
  assert.equal(query({ after: -1 }), '?after=-1');
});

/**
 * The script of the HTML report that draws its charts with uPlot (inlined beside it) from the
 * results embedded in the page as JSON. It is browser code kept as text: the project compiles for
 * Node without DOM types, and the report must run from a file with nothing to fetch.
 *
 * html.ts decides which charts exist and which have no data (those carry `data-empty` and a
 * static note, so they read the same without JavaScript); this script draws every other
 * `[data-chart]` container, then sets `document.body.dataset.chartsReady` to how many it drew.
 */
export const CHARTS_SCRIPT = String.raw`(function () {
  'use strict';
  var results = JSON.parse(document.getElementById('loadtest-results').textContent);
  var COLORS = {
    p50: '#2563eb', p99: '#dc2626', rate: '#059669', errors: '#dc2626', clients: '#7c3aed',
    rss: '#0891b2', heap: '#ea580c', cpu: '#ca8a04', bars: '#2563eb'
  };
  var HEIGHT = 260;
  var X = { time: false };
  var X_AXIS = { label: 'seconds since start' };

  function seconds(points) {
    return points.map(function (p) { return p.tMs / 1000; });
  }
  function mib(bytes) {
    return bytes === null ? null : bytes / 1048576;
  }
  function line(label, stroke, scale) {
    return { label: label, stroke: stroke, width: 2, scale: scale };
  }

  var CHARTS = {
    latency: function () {
      // Log scale: p50 and p99 are often two orders of magnitude apart. (A 0 would have no place on
      // it; latencies are recorded in whole microseconds, so 0 means "under 1 µs" and shows as a gap.)
      var t = results.timeline;
      var positive = function (v) { return v === null || v <= 0 ? null : v; };
      return {
        opts: {
          scales: { x: X, ms: { distr: 3, log: 10 } },
          axes: [X_AXIS, { scale: 'ms', label: 'ms (log scale)' }],
          series: [{ label: 's' }, line('p50 ms', COLORS.p50, 'ms'), line('p99 ms', COLORS.p99, 'ms')]
        },
        data: [
          seconds(t),
          t.map(function (p) { return positive(p.p50Ms); }),
          t.map(function (p) { return positive(p.p99Ms); })
        ]
      };
    },
    throughput: function () {
      // Each point covers the time since the previous one: the last is usually a partial second.
      var t = results.timeline, previous = 0, rate = [], errors = [];
      t.forEach(function (p) {
        var dt = Math.max(p.tMs - previous, 1) / 1000;
        previous = p.tMs;
        rate.push(p.completed / dt);
        errors.push(p.errors / dt);
      });
      return {
        opts: {
          scales: { x: X, rate: { auto: true }, clients: { auto: true } },
          axes: [
            X_AXIS,
            { scale: 'rate', label: 'per second' },
            { scale: 'clients', label: 'active clients', side: 1, grid: { show: false } }
          ],
          series: [
            { label: 's' },
            line('completed/s', COLORS.rate, 'rate'),
            line('errors/s', COLORS.errors, 'rate'),
            line('active clients', COLORS.clients, 'clients')
          ]
        },
        data: [seconds(t), rate, errors, t.map(function (p) { return p.activeClients; })]
      };
    },
    histogram: function (element) {
      var name = element.dataset.operation;
      var op = results.operations.filter(function (o) { return o.name === name; })[0];
      return {
        opts: {
          scales: { x: { time: false, distr: 3, log: 10 }, y: { auto: true } },
          axes: [{ label: 'latency ms (log scale)' }, { label: 'count' }],
          series: [
            { label: 'up to ms' },
            {
              label: 'count', stroke: COLORS.bars, fill: COLORS.bars + '88', width: 1,
              paths: uPlot.paths.bars({ size: [0.9, Infinity] }), points: { show: false }
            }
          ]
        },
        data: [op.histogram.map(function (b) { return b.upToMs; }), op.histogram.map(function (b) { return b.count; })]
      };
    },
    memory: function () {
      var s = results.broker.samples;
      var series = [{ label: 's' }, line('RSS MiB', COLORS.rss, 'mib')];
      var data = [seconds(s), s.map(function (p) { return mib(p.rssBytes); })];
      if (s.some(function (p) { return p.heapUsedBytes !== null; })) {
        series.push(line('heap used MiB', COLORS.heap, 'mib'));
        data.push(s.map(function (p) { return mib(p.heapUsedBytes); }));
      }
      return {
        opts: { scales: { x: X, mib: { auto: true } }, axes: [X_AXIS, { scale: 'mib', label: 'MiB' }], series: series },
        data: data
      };
    },
    cpu: function () {
      var s = results.broker.samples;
      return {
        opts: {
          scales: { x: X, pct: { auto: true } },
          axes: [X_AXIS, { scale: 'pct', label: '% of one core' }],
          series: [{ label: 's' }, line('CPU %', COLORS.cpu, 'pct')]
        },
        data: [seconds(s), s.map(function (p) { return p.cpuPercent; })]
      };
    }
  };

  var drawn = [];
  document.querySelectorAll('[data-chart]').forEach(function (element) {
    if (element.hasAttribute('data-empty')) return;
    var kind = element.dataset.chart.split(':')[0];
    var chart = CHARTS[kind](element);
    chart.opts.width = Math.max(element.clientWidth, 300);
    chart.opts.height = HEIGHT;
    element.textContent = '';
    drawn.push({ element: element, plot: new uPlot(chart.opts, chart.data, element) });
  });
  window.addEventListener('resize', function () {
    drawn.forEach(function (d) { d.plot.setSize({ width: Math.max(d.element.clientWidth, 300), height: HEIGHT }); });
  });
  document.body.dataset.chartsReady = String(drawn.length);
})();
`;

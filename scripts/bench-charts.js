#!/usr/bin/env node
// Renders the benches' JSON (bench/results/*.json) as SVG charts (docs/img/bench-*.svg) and the
// tables of docs/benchmarks.md between its `<!-- bench:NAME -->` / `<!-- /bench:NAME -->` markers.
// Re-run it after a bench run to update the page:  node scripts/bench-charts.js [--results DIR]
//
// The SVG is written by hand (horizontal grouped bars, ~80 lines): every chart here is the same
// shape (Podwire next to its anchor, per size), and a charting library (vega, chart.js + canvas,
// d3 + jsdom) would bring a headless renderer or a native canvas build into the repo for that.
// A bench whose JSON is missing keeps the section an earlier run rendered (or gets a note saying how
// to produce it); one whose JSON has another shape gets a note. The benches are not changed.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.join(__dirname, '..');
const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] ? argv[i + 1] : dflt;
};
const RESULTS = path.resolve(opt('results', path.join(ROOT, 'bench', 'results')));
const PAGE = path.resolve(opt('page', path.join(ROOT, 'docs', 'benchmarks.md')));
const IMG = path.resolve(opt('img', path.join(ROOT, 'docs', 'img')));

const COLORS = ['#2b6cb0', '#a0aec0', '#dd6b20', '#38a169'];
const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const num = (x, d = 2) => (typeof x === 'number' && Number.isFinite(x) ? (Math.abs(x) >= 100 ? Math.round(x).toLocaleString('en-US') : x.toFixed(d)) : '-');

/** chart: { title, unit, better: 'lower'|'higher', series: [names], groups: [{ label, values: [number|undefined] }] } */
function svg(chart) {
  const barH = 16;
  const gap = 10;
  const left = 170;
  const width = 720;
  const plotW = width - left - 90;
  const n = chart.series.length;
  const groupH = n * barH + gap;
  const top = 48;
  // One legend row per series under the bars (names are long: "anchor: reference (bridge+host-local)").
  const legendTop = top + chart.groups.length * groupH + 6;
  const height = legendTop + n * 18 + 6;
  const max = Math.max(...chart.groups.flatMap((g) => g.values.filter((v) => typeof v === 'number' && Number.isFinite(v))), 0) || 1;
  const out = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="100%" height="100%" fill="#ffffff"/>`);
  out.push(`<text x="10" y="20" font-size="15" font-weight="bold">${esc(chart.title)}</text>`);
  out.push(`<text x="10" y="38" fill="#555">${esc(`${chart.unit} — ${chart.better} is better`)}</text>`);
  chart.series.forEach((s, i) => {
    const y = legendTop + i * 18;
    out.push(`<rect x="${left}" y="${y}" width="12" height="12" fill="${COLORS[i % COLORS.length]}"/><text x="${left + 16}" y="${y + 10}">${esc(s)}</text>`);
  });
  chart.groups.forEach((g, gi) => {
    const y0 = top + gi * groupH;
    out.push(`<text x="${left - 8}" y="${y0 + (n * barH) / 2 + 4}" text-anchor="end">${esc(g.label)}</text>`);
    g.values.forEach((v, i) => {
      const y = y0 + i * barH;
      if (typeof v !== 'number' || !Number.isFinite(v)) {
        out.push(`<text x="${left + 4}" y="${y + 12}" fill="#888">n/a</text>`);
        return;
      }
      const w = Math.max(1, (v / max) * plotW);
      out.push(`<rect x="${left}" y="${y + 1}" width="${w.toFixed(1)}" height="${barH - 3}" fill="${COLORS[i % COLORS.length]}"><title>${esc(`${chart.series[i]}: ${num(v, 3)} ${chart.unit}`)}</title></rect>`);
      out.push(`<text x="${(left + w + 4).toFixed(1)}" y="${y + 12}">${esc(num(v, 3))}</text>`);
    });
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

function table(header, rows) {
  return [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

/**
 * The newest file for a bench: NAME.json or NAME-<time>.json (a digit after the dash, so
 * proxy-iptables.json or overlay-tput.json, other benches' files, are not taken for NAME's).
 */
function resultFile(name) {
  if (!fs.existsSync(RESULTS)) return undefined;
  const files = fs
    .readdirSync(RESULTS)
    .filter((f) => f === `${name}.json` || (new RegExp(`^${name}-\\d`).test(f) && f.endsWith('.json')))
    .map((f) => path.join(RESULTS, f))
    .sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs);
  return files[0];
}

// Each bench: how to run it, and how to read its JSON (undefined: not the shape expected).
const BENCHES = [
  {
    name: 'overlay',
    run: 'flock /tmp/podwire-bench.lock node dist/bench/overlay/run.js',
    read(j) {
      if (!Array.isArray(j.rows)) return undefined;
      return {
        when: j.at,
        chart: { title: 'Overlay: program routes + neighbours + FDB for N nodes', unit: 'seconds', better: 'lower', series: ['podwire', 'anchor: ip -batch + bridge -batch'], groups: j.rows.map((r) => ({ label: `${r.nodes} nodes`, values: [r.podwireS, r.ipBatchS] })) },
        // ratio = anchor time ÷ podwire time (the speed-up); target: at least targets.ratio, and 10,000 nodes within targets.tenThousandS.
        table: table(['nodes', 'entries', 'podwire (s)', 'ip -batch (s)', 'speed-up vs anchor', 'target'], j.rows.map((r) => {
          const met = r.ratio >= (j.targets?.ratio ?? Infinity) && (r.nodes !== 10000 || r.podwireS <= (j.targets?.tenThousandS ?? Infinity));
          return [r.nodes, r.entries, num(r.podwireS, 3), num(r.ipBatchS, 3), `${num(r.ratio)}×`, `≥ ${j.targets?.ratio ?? '?'}×${r.nodes === 10000 ? `, ≤ ${j.targets?.tenThousandS ?? '?'} s` : ''}: ${met ? 'met' : '**missed**'}`];
        })),
      };
    },
  },
  {
    name: 'proxy',
    run: 'flock /tmp/podwire-bench.lock node dist/bench/proxy/run.js',
    read(j) {
      if (!Array.isArray(j.rows)) return undefined;
      return {
        when: j.date ?? j.at,
        chart: { title: 'Service proxy: cold sync of N Services (nftables)', unit: 'seconds', better: 'lower', series: ['podwire', "anchor: kube-proxy's nftables layout"], groups: j.rows.map((r) => ({ label: `${r.n} Services`, values: [r.podwireColdS, r.anchorS] })) },
        table: table(['Services', 'podwire (s)', 'kube-proxy layout (s)', 'speed-up vs anchor', 'change p50 (ms)'], j.rows.map((r) => [r.n, num(r.podwireColdS), `${r.anchorBoundHit ? '>' : ''}${num(r.anchorS)}`, `${r.anchorBoundHit ? '>' : ''}${num(r.ratio, 1)}×`, num(r.changeP50Ms, 1)])),
      };
    },
  },
  {
    name: 'netlink',
    run: 'flock /tmp/podwire-bench.lock node dist/bench/netlink/run.js',
    read(j) {
      if (!Array.isArray(j.rows)) return undefined;
      const key = (r) => `${r.kind} ${r.op}`;
      const groups = [...new Set(j.rows.map(key))];
      const methods = ['native', 'ip-batch', 'npm-netlink'].filter((m) => j.rows.some((r) => r.method === m));
      const rate = (m, g) => j.rows.find((r) => r.method === m && key(r) === g)?.perSec;
      return {
        when: j.date,
        chart: { title: `Netlink: ${j.n} objects, operations per second`, unit: 'objects/s', better: 'higher', series: methods.map((m) => (m === 'native' ? 'podwire (native addon)' : `anchor: ${m}`)), groups: groups.map((g) => ({ label: g, values: methods.map((m) => rate(m, g)) })) },
        table: table(['objects', ...methods.map((m) => `${m} (/s)`), 'native ÷ ip-batch'], groups.map((g) => [g, ...methods.map((m) => num(rate(m, g), 0)), `${num(rate('native', g) / rate('ip-batch', g))}×`])),
      };
    },
  },
  {
    name: 'cni',
    run: 'flock /tmp/podwire-bench.lock node dist/bench/cni/run.js',
    read(j) {
      const p = j.plugins;
      if (!p || typeof p !== 'object') return undefined;
      const names = Object.keys(p);
      const ref = names.find((n) => n.startsWith('reference')) ?? names[names.length - 1];
      const ordered = [...names.filter((n) => n !== ref), ref];
      const rows = [];
      for (const mode of ['serial', 'concurrent']) for (const cmd of ['add', 'del']) rows.push({ label: `${cmd.toUpperCase()} p50, ${mode}`, values: ordered.map((n) => p[n]?.[mode]?.[cmd]?.p50) });
      return {
        when: j.date,
        chart: { title: 'CNI: one ADD / DEL, median', unit: 'ms', better: 'lower', series: ordered.map((n) => (n === ref ? `anchor: ${n}` : n)), groups: rows },
        table: table(['call', ...ordered], rows.map((r) => [r.label, ...r.values.map((v) => num(v, 1))])) + (Array.isArray(j.targets) ? `\n\n${table(['target', 'ratio', 'limit', 'result'], j.targets.map((t) => [t.name, `${num(t.ratio)}×`, `≤ ${t.limit}×`, t.result]))}` : ''),
      };
    },
  },
  {
    name: 'dns',
    run: 'flock /tmp/podwire-bench.lock node dist/bench/dns/run.js',
    read(j) {
      const s = j.summary;
      if (!s || typeof s !== 'object') return undefined;
      const servers = Object.keys(s);
      return {
        when: j.when,
        chart: { title: 'DNS: queries per server CPU-second', unit: 'qps per CPU-s', better: 'higher', series: servers.map((n) => (n === 'podwire' ? n : `anchor: ${n}`)), groups: [{ label: 'qps / CPU-s', values: servers.map((n) => s[n].qpsPerServerCpuSec) }] },
        table: table(['server', 'qps', 'qps per CPU-s', 'avg latency (ms)', 'lost at fixed qps', 'RSS (MB)'], servers.map((n) => [n, num(s[n].qps, 0), num(s[n].qpsPerServerCpuSec, 0), num(s[n].avgLatencyMs, 3), num(s[n].lostAtFixedQps, 0), num(s[n].rssMb, 1)])),
      };
    },
  },
  {
    name: 'sources',
    run: 'flock /tmp/podwire-bench.lock node dist/bench/sources/run.js',
    read(j) {
      if (!Array.isArray(j.daemon)) return undefined;
      const rows = j.daemon.filter((r) => r.layout);
      const label = (r) => `${r.layout.services}×${r.layout.endpointsPerService}`;
      return {
        when: j.date,
        chart: { title: 'Cluster state: podwired RSS per layout (Services × endpoints)', unit: 'MB', better: 'lower', series: ['podwired RSS', `target ${j.rssTargetMb} MB`], groups: rows.map((r) => ({ label: `${label(r)} ${r.launch === 'bin/podwired (shebang)' ? '' : '(node)'}`.trim(), values: [r.judgedRssMb ?? r.afterIdle?.rssMb, j.rssTargetMb] })) },
        table: table(['layout', 'launch', 'initial sync (ms)', 'RSS (MB)', 'within target'], rows.map((r) => [label(r), r.launch ?? '-', num(r.initialSyncMs, 0), num(r.judgedRssMb ?? r.afterIdle?.rssMb, 1), r.rssWithinTarget ? 'yes' : 'NO'])),
      };
    },
  },
];

function section(b) {
  const file = resultFile(b.name);
  if (!file) return `_No \`bench/results/${b.name}*.json\` on the machine that last ran this script: run \`${b.run}\`, then \`node scripts/bench-charts.js\`._`;
  let j;
  try {
    j = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    return `_\`${path.basename(file)}\` is not JSON (${err.message}); skipped._`;
  }
  const r = b.read(j);
  if (!r) return `_\`${path.basename(file)}\` does not have the shape this script reads; skipped (update scripts/bench-charts.js)._`;
  fs.mkdirSync(IMG, { recursive: true });
  const img = `bench-${b.name}.svg`;
  fs.writeFileSync(path.join(IMG, img), svg(r.chart));
  const when = r.when ?? `${fs.statSync(file).mtime.toISOString()} (file time)`;
  return `![${r.chart.title}](img/${img})\n\n${r.table}\n\n_From \`bench/results/${path.basename(file)}\`, run ${when}; re-run: \`${b.run}\`._`;
}

let page = fs.readFileSync(PAGE, 'utf8');
const notes = [];
for (const b of BENCHES) {
  const re = new RegExp(`(<!-- bench:${b.name} -->)[\\s\\S]*?(<!-- /bench:${b.name} -->)`);
  if (!re.test(page)) {
    notes.push(`${b.name}: no markers in ${path.relative(ROOT, PAGE)}`);
    continue;
  }
  // Without a JSON here, a section rendered on an earlier run stays as it is (results are per machine).
  const previous = re.exec(page)[0];
  if (!resultFile(b.name) && previous.includes('![')) {
    notes.push(`${b.name}: no JSON in ${RESULTS}; kept the section from the last run`);
    continue;
  }
  const body = section(b);
  page = page.replace(re, (_m, a, z) => `${a}\n${body}\n${z}`);
  notes.push(`${b.name}: ${body.startsWith('_') ? body.replace(/_/g, '') : 'chart + table'}`);
}
fs.writeFileSync(PAGE, page);
for (const n of notes) process.stdout.write(`bench-charts: ${n}\n`);

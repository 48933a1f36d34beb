const t0 = performance.now();
const { runCni } = require('./dist/src/cni-plugin/plugin.js');
const { createRealDeps } = require('./dist/src/cni-plugin/deps-real.js');
const { createStderrLogger } = require('./dist/src/cni-plugin/stderr-log.js');
const t1 = performance.now();
const stdin = require('fs').readFileSync(0);
const t2 = performance.now();
const deps = createRealDeps(createStderrLogger('warn'), { warm: false });
// instrument hostKernel/openPodKernel/openStore
for (const k of ['hostKernel', 'openPodKernel']) { const f = deps[k]; deps[k] = async (...a) => { const s = performance.now(); const r = await f(...a); process.stderr.write(`${k} ${(performance.now()-s).toFixed(1)}\n`); return r; }; }
runCni(process.env, stdin, deps).then((o) => { const t3 = performance.now(); process.stderr.write(`require ${(t1-t0).toFixed(1)} stdin ${(t2-t1).toFixed(1)} runCni ${(t3-t2).toFixed(1)} exit=${o.exitCode} ${o.exitCode ? o.stdout : ''} boot ${performance.nodeTiming.bootstrapComplete.toFixed(1)}\n`); deps.close(); setImmediate(() => process.exit(0)); });

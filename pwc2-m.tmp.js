const t=performance.now(); for (const m of process.argv.slice(2)) require(m); process.stdout.write(((performance.now()-t)).toFixed(1)+' ');

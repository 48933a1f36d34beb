const { spawnSync } = require('child_process');
const [file, n, sub, bridge] = process.argv.slice(2);
const conf = JSON.stringify({ cniVersion: '1.0.0', name: 't' + bridge, type: file.includes('bridge') ? 'bridge' : 'podwire', bridge, isGateway: true, ipam: { type: 'host-local', ranges: [[{ subnet: sub }]], dataDir: '/tmp/pwc2-t-data' } });
const wall = [], cpu = [];
for (let i = 0; i < Number(n); i++) {
  for (const cmd of ['ADD', 'DEL']) {
    const r = spawnSync('/usr/bin/time', ['-f', '%e %U %S', file], { input: conf, env: { PATH: process.env.PATH, CNI_COMMAND: cmd, CNI_CONTAINERID: 'ab' + i, CNI_NETNS: '/run/netns/pwc2-t-pod', CNI_IFNAME: 'eth0', CNI_PATH: '/usr/lib/cni' } });
    const [e, u, s] = r.stderr.toString().trim().split('\n').pop().split(' ').map(Number);
    if (cmd === 'ADD') { if (r.status !== 0) { console.log('FAIL', r.stdout.toString()); } wall.push(e * 1000); cpu.push((u + s) * 1000); }
  }
}
const med = (x) => x.sort((a, b) => a - b)[Math.floor(x.length / 2)];
console.log(file.split('/').pop().padEnd(14), 'ADD wall p50', med(wall).toFixed(0), 'ms; cpu p50', med(cpu).toFixed(0), 'ms');

/**
 * The API-server fixture (test-netns/fixtures/apiserver) as a process inside a lab namespace, so a
 * node's podwired can reach it on that namespace's 127.0.0.1:
 *   node apiserver-child.js '{"objects":{"services":[...],...},"kubeconfig":"/path"}'
 * prints `READY <port>`; then reads one command per line on stdin and answers `OK <command>`:
 *   stop               the API server goes away (listener closed, every connection cut; data kept)
 *   start              back on the same port
 *   put <resource> <json>   create or replace an object (works while stopped: it is seen on return)
 */
import { createInterface } from 'node:readline';
import { FakeApiServer, type KObject, type ResourceName } from '../fixtures/apiserver/server';

const args = JSON.parse(process.argv[2] ?? '{}') as { objects: Partial<Record<ResourceName, KObject[]>>; kubeconfig: string };
const api = new FakeApiServer();

async function main(): Promise<void> {
  for (const [r, objs] of Object.entries(args.objects)) api.bulkLoad(r as ResourceName, objs ?? []);
  await api.start();
  api.writeKubeconfig(args.kubeconfig);
  process.stdout.write(`READY ${api.port}\n`);
  for await (const line of createInterface({ input: process.stdin })) {
    const [cmd, resource, ...rest] = line.split(' ');
    try {
      if (cmd === 'stop') await api.stop();
      else if (cmd === 'start') await api.start();
      else if (cmd === 'put') api.put(resource as ResourceName, JSON.parse(rest.join(' ')) as KObject);
      else throw new Error(`unknown command ${cmd ?? ''}`);
      process.stdout.write(`OK ${cmd}\n`);
    } catch (e) {
      process.stdout.write(`ERR ${cmd ?? ''} ${(e as Error).message}\n`);
    }
  }
  await api.stop();
}

process.on('SIGTERM', () => process.exit(0));
void main();

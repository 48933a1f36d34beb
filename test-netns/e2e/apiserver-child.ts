/**
 * The API-server fixture (test-netns/fixtures/apiserver) as a process inside a lab namespace, so a
 * node's podwired can reach it on that namespace's 127.0.0.1:
 *   node apiserver-child.js '{"objects":{"services":[...],...},"kubeconfig":"/path"}'
 * prints `READY <port>`; then reads one command per line on stdin and answers `OK <command>`:
 *   stop               the API server goes away (listener closed, every connection cut; data kept)
 *   start              back on the same port
 *   put <resource> <json>   create or replace an object (works while stopped: it is seen on return)
 *   hold-patches <resource> <n>   after n more PATCHes of the resource, hold the next ones unanswered
 *   held-patches       `OK held-patches {"held":n,"gone":m}`: how many wait now, how many of them lost their client
 *   release-patches    serve the held PATCHes (those whose client has gone: dropped, 499); `OK release-patches <n held>`
 *   list <resource>    `OK list <JSON array of the objects>` (one line)
 *   patches            `OK patches <JSON array>`: every PATCH so far, {path, status, held, body, before}
 *   writes <resource>  `OK writes <JSON array>`: every stored change, {rv, type, object, previous}
 */
import { createInterface } from 'node:readline';
import { FakeApiServer, type KObject, type RequestRecord, type ResourceName } from '../fixtures/apiserver/server';

const args = JSON.parse(process.argv[2] ?? '{}') as { objects: Partial<Record<ResourceName, KObject[]>>; kubeconfig: string };
const api = new FakeApiServer();
// Every PATCH, kept whole (api.requests drops old entries): the record is filled in (body, before, status) as it is served.
const patches: RequestRecord[] = [];
api.onRequest = (r) => {
  if (r.method === 'PATCH') patches.push(r);
};

async function main(): Promise<void> {
  for (const [r, objs] of Object.entries(args.objects)) api.bulkLoad(r as ResourceName, objs ?? []);
  await api.start();
  api.writeKubeconfig(args.kubeconfig);
  process.stdout.write(`READY ${api.port}\n`);
  for await (const line of createInterface({ input: process.stdin })) {
    const [cmd, resource, ...rest] = line.split(' ');
    let answer: string | undefined;
    try {
      if (cmd === 'stop') await api.stop();
      else if (cmd === 'start') await api.start();
      else if (cmd === 'put') api.put(resource as ResourceName, JSON.parse(rest.join(' ')) as KObject);
      else if (cmd === 'hold-patches') api.holdPatches(resource as ResourceName, Number(rest[0]));
      else if (cmd === 'held-patches') answer = JSON.stringify({ held: api.heldPatches, gone: api.heldPatchesGone });
      else if (cmd === 'release-patches') answer = String(api.releasePatches());
      else if (cmd === 'list') answer = JSON.stringify(api.list(resource as ResourceName));
      else if (cmd === 'patches') answer = JSON.stringify(patches.map(({ path, status, held, body, before }) => ({ path, status, held, body, before })));
      else if (cmd === 'writes') answer = JSON.stringify(api.writes(resource as ResourceName));
      else throw new Error(`unknown command ${cmd ?? ''}`);
      process.stdout.write(`OK ${cmd}${answer === undefined ? '' : ` ${answer}`}\n`);
    } catch (e) {
      process.stdout.write(`ERR ${cmd ?? ''} ${(e as Error).message}\n`);
    }
  }
  await api.stop();
}

process.on('SIGTERM', () => process.exit(0));
void main();

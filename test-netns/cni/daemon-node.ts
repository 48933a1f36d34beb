/**
 * One lab node running the real podwired (bin/podwired, test-netns/lab/podwired.ts): an
 * underlay, a node namespace, a Node manifest with its podCIDR, the daemon started in the
 * node and waited for (/readyz), its conflist read. CNI calls then go the way a container
 * runtime makes them: the binary podwired installed in its CNI bin dir (the shim), exec'd in
 * the node namespace with CNI_* + stdin, forwarding to podwired's control socket.
 */
import type { Lab, LabNode } from '../harness';
import { pluginConfig, readConflist, runInstalledCni, type CniOutcome, type Conflist } from '../lab/cni-client';
import { createRunDir, Podwired, writeNodeManifests, type RunDir } from '../lab/podwired';

export interface DaemonNode {
  node: LabNode;
  daemon: Podwired;
  run: RunDir;
  conflist: Conflist;
  /** The network config the runtime passes for the podwire plugin (conflist plugin 0). */
  stdin: string;
  podCIDR: string;
  /** Run the installed binary: CNI ADD/DEL/CHECK of `containerId` in pod netns `podNs`. */
  cni(command: 'ADD' | 'DEL' | 'CHECK', containerId: string, podNs: string, stdin?: string): Promise<CniOutcome>;
}

/** Call `run.remove()` when done (the lab kills the daemon at cleanup). */
export async function startDaemonNode(lab: Lab, opts: { runPrefix: string; podCIDR?: string; logLevel?: string }): Promise<DaemonNode> {
  const run = createRunDir(opts.runPrefix);
  try {
    const podCIDR = opts.podCIDR ?? '10.244.1.0/24';
    const ul = await lab.addUnderlay();
    const node = await lab.addNode(ul, { mtu: 1500 });
    writeNodeManifests(run.manifests, [{ name: 'node1', podCIDR, internalIP: node.ip }]);
    const daemon = new Podwired(lab, node.ns, { nodeName: 'node1', run, logLevel: opts.logLevel ?? 'info', extraArgs: ['--backend', 'host-gw'] });
    const ready = await daemon.waitReady();
    if (!ready.ready) throw new Error(`podwired not ready (${ready.last}):\n${daemon.tail()}`);
    let conflist: Conflist | undefined;
    for (let i = 0; i < 100 && !conflist; i++) {
      try {
        conflist = readConflist(daemon.conflistPath);
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    if (!conflist) throw new Error(`podwired wrote no conflist at ${daemon.conflistPath}:\n${daemon.tail()}`);
    const stdin = pluginConfig(conflist, 0);
    return {
      node,
      daemon,
      run,
      conflist,
      stdin,
      podCIDR,
      cni: (command, containerId, podNs, input) => runInstalledCni(daemon, input ?? stdin, { command, containerId, podNs }),
    };
  } catch (err) {
    run.remove();
    throw err;
  }
}

/** Links: create (bridge, veth, vxlan), delete, set flags/MTU/MAC/master, bridge port flags, move to a netns. */
import { AlreadyExistsError, InvalidInputError, KernelError } from '../../common/errors';
import { E } from '../errno';
import { openNetnsFdSync } from '../netns';
import * as C from '../rtnetlink/constants';
import { decodeLink, encodeBridgePort, encodeDelLink, encodeNewLink, encodeSetLink, vethInfoData, vxlanInfoData, type SetLinkRequest } from '../rtnetlink/link';
import type { Link, LinkSpec, NetnsRef } from '../types';
import { macBytes, validateIfName, validateMtu, validatePort, validateU32, validateU8, validateVni } from '../validate';
import { errnoOf, toIp, type NetContext } from './context';

export async function createLink(ctx: NetContext, spec: LinkSpec): Promise<Link> {
  validateIfName(spec.name, 'name');
  if (spec.mtu !== undefined) validateMtu(spec.mtu);
  const mac = spec.mac !== undefined ? macBytes(spec.mac) : undefined;
  let infoData: Buffer[] | undefined;
  let peerFd: { close(): Promise<void>; fd: number } | undefined;
  let replies: Buffer[];
  let master = spec.masterIndex;
  try {
    switch (spec.kind) {
      case 'bridge':
        break;
      case 'veth': {
        validateIfName(spec.peerName, 'peerName');
        if (spec.peerMtu !== undefined) validateMtu(spec.peerMtu, 'peerMtu');
        const peerMac = spec.peerMac !== undefined ? macBytes(spec.peerMac, 'peerMac') : undefined;
        if (spec.peerNetns) peerFd = openNetnsFdSync(spec.peerNetns);
        else if (spec.peerName === spec.name) throw new InvalidInputError('peerName', spec.peerName, 'must differ from name in the same netns');
        infoData = vethInfoData({ name: spec.peerName, netnsFd: peerFd?.fd, mtu: spec.peerMtu ?? spec.mtu, mac: peerMac });
        break;
      }
      case 'vxlan': {
        validateVni(spec.vni);
        validatePort(spec.port);
        if (typeof spec.learning !== 'boolean') throw new InvalidInputError('learning', spec.learning, 'must be true or false');
        if (spec.ttl !== undefined) validateU8(spec.ttl, 'ttl');
        if (spec.portRange !== undefined) {
          const [lo, hi] = spec.portRange;
          validatePort(lo, 'portRange[0]');
          validatePort(hi, 'portRange[1]');
          if (lo > hi) throw new InvalidInputError('portRange', spec.portRange, 'low port must not exceed high port');
        }
        const local = spec.local !== undefined ? toIp(spec.local, 'local') : undefined;
        const underlayIndex = spec.underlayDevice !== undefined ? await ctx.indexOf(spec.underlayDevice, 'underlayDevice') : undefined;
        infoData = vxlanInfoData({ vni: spec.vni, port: spec.port, local, underlayIndex, learning: spec.learning, portRange: spec.portRange, ttl: spec.ttl, gbp: spec.gbp });
        break;
      }
      default:
        throw new InvalidInputError('kind', (spec as { kind: unknown }).kind, 'supported kinds: bridge, veth, vxlan');
    }
    // No lookup first: NLM_F_EXCL makes the kernel refuse a taken name (EEXIST, below).
    if (master !== undefined) validateU32(master, 'masterIndex');
    else if (spec.master !== undefined) master = await ctx.indexOf(spec.master, 'master');
    const msg = encodeNewLink({ name: spec.name, kind: spec.kind, infoData, mtu: spec.mtu, mac, up: spec.up, master, echo: true });
    try {
      replies = await ctx.call(`create ${spec.kind} link`, msg, 'name', spec.name);
    } catch (err) {
      if (errnoOf(err) === E.EEXIST) {
        const taken = spec.kind === 'veth' && !(await ctx.getLink(spec.name)) ? spec.peerName : spec.name;
        throw new AlreadyExistsError('link', taken, err);
      }
      throw err;
    }
  } finally {
    await peerFd?.close();
  }
  // Note: a bridge's MTU follows its smallest port on every enslave (the kernel only pins
  // it after an MTU *change*), so give its ports the same MTU, as the reference plugin does.
  // Linux 6.3+ echoes the new link (NLM_F_ECHO), sent before IFLA_MASTER is applied;
  // older kernels only ACK, and then one lookup fetches it.
  let link: Link | undefined;
  for (const m of replies) {
    if (m.length < 16 || m.readUInt16LE(4) !== C.RTM_NEWLINK) continue;
    const l = decodeLink(m);
    if (l.name === spec.name) link = l;
  }
  if (link && master !== undefined) link.masterIndex = master; // the ACK says the enslave succeeded
  link ??= await ctx.getLink(spec.name);
  if (!link) throw new KernelError(`create ${spec.kind} link${ctx.where()}`, `link ${spec.name} vanished right after creation`);
  ctx.linkIndex.set(link.name, link.index);
  return link;
}

export async function deleteLink(ctx: NetContext, name: string): Promise<void> {
  validateIfName(name);
  ctx.linkIndex.forget(name);
  const link = await ctx.getLink(name);
  if (!link) return;
  try {
    await ctx.call('delete link', encodeDelLink(link.index), 'link', name);
  } catch (err) {
    if (errnoOf(err) !== E.ENODEV) throw err;
  }
}

async function setLink(ctx: NetContext, name: string, what: string, r: Omit<SetLinkRequest, 'index'>): Promise<void> {
  const index = await ctx.indexOf(name);
  await ctx.call(`set link ${what}`, encodeSetLink({ ...r, index }), 'link', name);
}

export async function setLinkUp(ctx: NetContext, name: string, up: boolean): Promise<void> {
  return setLink(ctx, name, up ? 'up' : 'down', { up });
}

export async function setMtu(ctx: NetContext, name: string, mtu: number): Promise<void> {
  validateMtu(mtu);
  return setLink(ctx, name, `mtu ${mtu}`, { mtu });
}

export async function setMac(ctx: NetContext, name: string, mac: string): Promise<void> {
  const bytes = macBytes(mac);
  return setLink(ctx, name, `address ${mac}`, { mac: bytes });
}

export async function setMaster(ctx: NetContext, name: string, bridge: string | undefined): Promise<void> {
  const master = bridge === undefined ? 0 : await ctx.indexOf(bridge, 'bridge');
  return setLink(ctx, name, bridge === undefined ? 'nomaster' : `master ${bridge}`, { master });
}

export async function setBridgePort(ctx: NetContext, name: string, options: { hairpin?: boolean; learning?: boolean }): Promise<void> {
  if (options.hairpin === undefined && options.learning === undefined) return;
  const index = await ctx.indexOf(name);
  await ctx.call('set bridge port flags', encodeBridgePort(index, options), 'link', name);
}

export async function setPromisc(ctx: NetContext, name: string, on: boolean): Promise<void> {
  return setLink(ctx, name, `promisc ${on ? 'on' : 'off'}`, { promisc: on });
}

export async function moveToNetns(ctx: NetContext, name: string, target: NetnsRef, newName?: string): Promise<void> {
  if (newName !== undefined) validateIfName(newName, 'newName');
  const index = await ctx.indexOf(name);
  const fd = openNetnsFdSync(target);
  try {
    await ctx.call(`move link to netns ${target.path}`, encodeSetLink({ index, netnsFd: fd.fd, name: newName }), 'link', name);
    ctx.linkIndex.forget(name);
  } catch (err) {
    if (errnoOf(err) === E.EEXIST) throw new AlreadyExistsError('link', newName ?? name, err);
    throw err;
  } finally {
    await fd.close();
  }
}

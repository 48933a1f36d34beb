// Without a loadable libnftables addon, `auto` falls back to `nft -f -`. Own process
// (tap runs each file separately), so the addon is not loaded yet.
import t from 'tap';

t.test('openNftRunner: auto falls back to nft when the libnftables addon cannot load', async (t) => {
  process.env.PODWIRE_NFTABLES_ADDON = '/nonexistent/pwkn/podwire_nftables.node';
  const { openNftRunner, NetnsNft } = await import('./nft');
  const { nftablesAvailable } = await import('./native');
  t.equal(nftablesAvailable(), false);
  const r = openNftRunner({ path: '/run/netns/pwkn-x' });
  t.type(r, NetnsNft);
  t.equal(r.backend, 'nft');
  t.throws(() => openNftRunner(undefined, 'libnftables'), { code: 'PW_NATIVE_MISSING', value: '/nonexistent/pwkn/podwire_nftables.node', message: /libnftables-dev/ });
});

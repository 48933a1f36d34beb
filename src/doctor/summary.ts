/** One line per node from `podwire doctor --json` (what `podwire lab up` prints as its last step). */
import type { DoctorReport } from './index';

export function doctorSummaryLine(node: string, exitCode: number | null, stdout: string, stderr: string): string {
  let r: DoctorReport;
  try {
    r = JSON.parse(stdout) as DoctorReport;
  } catch {
    return `doctor ${node}: did not run (exit ${String(exitCode)}): ${(stderr || stdout).trim().split('\n')[0] ?? ''}`;
  }
  const bad = r.findings.filter((f) => f.level !== 'ok').map((f) => `${f.level} ${f.check}: ${f.subject}${f.fix ? ` (fix: ${f.fix})` : ''}`);
  return [`doctor ${node}: ${r.counts.ok} ok, ${r.counts.warn} warn, ${r.counts.FAIL} FAIL`, ...bad.map((b) => `  ${b}`)].join('\n');
}

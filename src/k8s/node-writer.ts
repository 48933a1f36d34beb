/**
 * The NodeWriter for sources that write nothing back (manifest mode): it records what
 * it was asked, so `podwire status` can show the annotations and conditions this node
 * would publish, and answers at once.
 */
import type { NodeConditionInput, NodeWriter } from './types';

export class RecordingNodeWriter implements NodeWriter {
  readonly writesBack = false;
  readonly annotations = new Map<string, string>();
  readonly conditions = new Map<string, NodeConditionInput>();

  async patchAnnotations(annotations: Readonly<Record<string, string | null>>): Promise<void> {
    for (const [k, v] of Object.entries(annotations)) {
      if (v === null) this.annotations.delete(k);
      else this.annotations.set(k, v);
    }
  }

  async setCondition(condition: NodeConditionInput): Promise<void> {
    this.conditions.set(condition.type, { ...condition });
  }
}

// A second process appending to an audit trail (run by test/unit/audit.test.ts through tsx):
// node --import tsx test/helpers/audit-writer.ts <dir> <count> <actor>
import { LocalChainAuditLog } from '#adapters/audit/local-chain.ts';

const [dir, count, actor] = process.argv.slice(2);
const audit = new LocalChainAuditLog({ dir: dir! });
// Appends in flight at once, as a busy `rekey serve` does.
await Promise.all(
  Array.from({ length: Number(count) }, (_, i) =>
    audit.append({ time: new Date().toISOString(), actor: actor!, action: 'Rotation Succeeded', secretId: `app/${actor}/${i}`, outcome: 'succeeded', durationMs: i }),
  ),
);

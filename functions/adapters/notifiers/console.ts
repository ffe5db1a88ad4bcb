import type { Notifier } from '#core/ports/notifier.ts';
import type { ChatMessage, Severity } from '#core/notifications.ts';

const MARK: Record<Severity, string> = { good: 'ok', info: 'info', warning: 'WARN', critical: 'ALERT' };

/** The laptop's chat (REKEY_NOTIFY_CONSOLE=true): one line per message on stderr, where `rekey serve` logs. */
export class ConsoleNotifier implements Notifier {
  readonly channel = 'console';

  constructor(private readonly write: (line: string) => void = (line) => process.stderr.write(line)) {}

  async send(message: ChatMessage): Promise<void> {
    const fields = message.fields
      .filter((f) => f.label !== 'Secret')
      .map((f) => `${f.label.toLowerCase()}=${f.value}`)
      .join(' ');
    this.write(`[chat ${MARK[message.severity]}] ${message.title}${fields ? ` (${fields})` : ''}${message.link ? ` ${message.link.url}` : ''}\n`);
  }
}

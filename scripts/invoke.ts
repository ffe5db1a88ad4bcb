/**
 * npm run -s invoke -- <function> [--path events/…/x.json | --data '{…}'] [--bundle] [--timeout 60]
 *
 * Invokes one Lambda handler locally with an event fixture, the way `serverless invoke local` would
 * if it could load ESM (.mjs) handlers (it cannot, and then hangs: DESIGN.md §10).
 *
 *   <function>    rotate-secret, scheduled-rotation, ops, leak-webhook, leak-worker, on-rekey-event
 *   --path FILE   the event as JSON (the fixtures under events/); --data TEXT: the event inline;
 *                 neither: the event is read from stdin
 *   --bundle      run the bundle `npm run package` built (.serverless/<function>.zip), not the
 *                 TypeScript source: what Lambda would run
 *   --timeout S   the Lambda timeout the handler sees (its abort signal fires 1 s before); default 60
 *
 * Configuration comes from the environment, as on Lambda (functions/runtime/config.ts): by default
 * the local encrypted store in ./.rekey; REKEY_STORE=aws with AWS credentials talks to AWS.
 * The handler's answer is printed on stdout as JSON (exit status 1 when it is `{ ok: false }` or an
 * HTTP status of 400 or more); a thrown failure — only its "CODE: message" — goes to stderr with
 * exit status 1. Logs (JSON lines) are on stderr.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { randomUUID } from 'node:crypto';
import type { Context } from 'aws-lambda';

const FUNCTIONS = ['rotate-secret', 'scheduled-rotation', 'ops', 'leak-webhook', 'leak-worker', 'on-rekey-event'];
const ROOT = resolve(import.meta.dirname, '..');

type Handler = (event: unknown, context: Context) => Promise<unknown>;

interface Args {
  fn: string;
  path?: string;
  data?: string;
  bundle: boolean;
  timeoutSeconds: number;
}

function usage(message: string): never {
  process.stderr.write(`${message}\nusage: npm run -s invoke -- <${FUNCTIONS.join('|')}> [--path FILE | --data JSON] [--bundle] [--timeout SECONDS]\n`);
  process.exit(2);
}

function parseArgs(argv: string[]): Args {
  const [fn, ...rest] = argv;
  if (!fn || !FUNCTIONS.includes(fn)) usage(fn ? `unknown function "${fn}"` : 'which function?');
  const args: Args = { fn, bundle: false, timeoutSeconds: 60 };
  for (let i = 0; i < rest.length; i++) {
    const flag = rest[i];
    const value = () => rest[++i] ?? usage(`${flag} needs a value`);
    if (flag === '--path' || flag === '-p') args.path = value();
    else if (flag === '--data' || flag === '-d') args.data = value();
    else if (flag === '--bundle') args.bundle = true;
    else if (flag === '--timeout') args.timeoutSeconds = Number(value());
    else usage(`unknown option ${flag}`);
  }
  if (args.path && args.data) usage('give --path or --data, not both');
  if (!Number.isFinite(args.timeoutSeconds) || args.timeoutSeconds <= 1) usage('--timeout must be a number of seconds above 1');
  return args;
}

async function readEvent(args: Args): Promise<unknown> {
  let text: string;
  if (args.path) text = readFileSync(resolve(args.path), 'utf8');
  else if (args.data !== undefined) text = args.data;
  else {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    text = Buffer.concat(chunks).toString('utf8');
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    usage(`the event is not JSON (${args.path ?? (args.data !== undefined ? '--data' : 'stdin')})`);
  }
}

/** A Lambda context: request id, names, and the clock the abort signal is computed from. */
function lambdaContext(fn: string, timeoutSeconds: number): Context {
  const deadline = Date.now() + timeoutSeconds * 1000;
  const name = `rekey-local-${fn}`;
  return {
    awsRequestId: randomUUID(),
    functionName: name,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:local:000000000000:function:${name}`,
    memoryLimitInMB: '512',
    logGroupName: `/aws/lambda/${name}`,
    logStreamName: 'local',
    callbackWaitsForEmptyEventLoop: false,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: () => {},
    fail: () => {},
    succeed: () => {},
  };
}

/** The handler from source (through tsx), or from the packaged zip, extracted to a temp dir. */
async function loadHandler(args: Args): Promise<{ handler: Handler; cleanup: () => void }> {
  if (!args.bundle) {
    const module = (await import(pathToFileURL(join(ROOT, 'functions', `${args.fn}.ts`)).href)) as { handler: Handler };
    return { handler: module.handler, cleanup: () => {} };
  }
  const { extractZip } = await import('../test/packaging/run-package.ts');
  const zip = join(ROOT, '.serverless', `${args.fn}.zip`);
  let bytes: Buffer;
  try {
    bytes = readFileSync(zip);
  } catch {
    usage(`no ${zip}: run npm run package first`);
  }
  const dir = mkdtempSync(join(tmpdir(), `rekey-invoke-${args.fn}-`));
  const bundle = extractZip(bytes, dir).find((file) => file.endsWith(`${args.fn}.mjs`));
  if (!bundle) usage(`${zip} holds no ${args.fn}.mjs`);
  const module = (await import(pathToFileURL(bundle).href)) as { handler: Handler };
  return { handler: module.handler, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

const write = (stream: NodeJS.WriteStream, text: string) => new Promise<void>((done) => stream.write(text, () => done()));

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const event = await readEvent(args);
  const { handler, cleanup } = await loadHandler(args);
  try {
    const result = await handler(event, lambdaContext(args.fn, args.timeoutSeconds));
    await write(process.stdout, `${JSON.stringify(result ?? null, null, 2)}\n`);
    // ops and the webhook answer failures as { ok: false, error } or a 4xx/5xx: a script should notice.
    const failed = (result as { ok?: unknown })?.ok === false || Number((result as { statusCode?: unknown })?.statusCode) >= 400;
    return failed ? 1 : 0;
  } catch (error) {
    // The middleware has already reduced it to "CODE: message"; print exactly that.
    await write(process.stderr, `${(error as Error).name}: ${(error as Error).message}\n`);
    return 1;
  } finally {
    cleanup();
  }
}

// Database pools and SDK sockets would keep the process alive: the answer is out, so exit.
process.exit(await main());
